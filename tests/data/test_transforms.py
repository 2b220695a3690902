import numpy as np
import pytest

from glamor_fast.data.transforms import (CONTEXT_CROP, FACE_SIZE, IMAGENET_MEAN, IMAGENET_STD, clip_box,
                                         crop_context, mask_face, preprocess)


def _img(h=60, w=80, seed=0):
    # values in [1, 255] so that a masked (zero) pixel is always distinguishable
    return np.random.default_rng(seed).integers(1, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("box", [(10, 5, 30, 25), (0, 0, 1, 1), (79, 59, 80, 60), (0, 0, 80, 60), (3, 7, 4, 50)])
def test_mask_face_zeros_exactly_inside_box(box):
    img = _img()
    out = mask_face(img, box)
    x1, y1, x2, y2 = box
    inside = np.zeros(img.shape[:2], bool)
    inside[y1:y2, x1:x2] = True
    assert (out[inside] == 0).all()
    np.testing.assert_array_equal(out[~inside], img[~inside])
    assert img.min() > 0  # the input is not modified


def test_preprocess_shapes_ranges_and_masking():
    img = _img(128, 171)
    box = (20, 30, 60, 70)
    face, context = preprocess(img, box)
    assert face.shape == (3, FACE_SIZE, FACE_SIZE) and face.dtype == np.float32
    assert context.shape == (3, CONTEXT_CROP, CONTEXT_CROP) and context.dtype == np.float32
    assert 0.0 <= face.min() and face.max() <= 1.0 and 0.0 <= context.min() and context.max() <= 1.0
    # 128x171 input: resize is the identity, the eval crop is the centre crop at (top 8, left 29)
    expected = mask_face(img, box)[8:120, 29:141].transpose(2, 0, 1).astype(np.float32) / 255
    np.testing.assert_array_equal(context, expected)
    visible = preprocess(img, box, face_visible=True)[1]
    np.testing.assert_array_equal(visible, img[8:120, 29:141].transpose(2, 0, 1).astype(np.float32) / 255)
    # box inside the crop window: rows 30..69 -> 22..61, columns 20..59 -> 0..30 of the crop
    assert (context[:, 22:62, 0:31] == 0).all() and (visible[:, 22:62, 0:31] > 0).all()


def test_preprocess_without_box_zero_face_unmasked_context():
    img = _img(128, 171)
    face, context = preprocess(img, None, normalize=True)
    assert (face == 0).all()
    expected = (img[8:120, 29:141].astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(context, expected.transpose(2, 0, 1), rtol=1e-6, atol=1e-6)


def test_train_augmentation_deterministic_given_generator():
    img = _img(90, 120, seed=3)
    box = (30, 10, 80, 60)
    a = preprocess(img, box, train=True, rng=np.random.default_rng(7))
    b = preprocess(img, box, train=True, rng=np.random.default_rng(7))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    outs = [preprocess(img, box, train=True, rng=np.random.default_rng(s)) for s in range(8)]
    assert len({o[0].tobytes() for o in outs}) > 1 and len({o[1].tobytes() for o in outs}) > 1
    ev = preprocess(img, box)
    for face, context in outs:
        assert face.shape == ev[0].shape and context.shape == ev[1].shape
        assert 0 <= face.min() and face.max() <= 1 and 0 <= context.min() and context.max() <= 1


def test_random_crop_covers_all_offsets_and_stays_inside():
    img = np.zeros((128, 171, 3), np.uint8)
    img[:, :, 0] = np.arange(171)[None, :].astype(np.uint8)  # column index
    img[:, :, 1] = np.arange(128)[:, None].astype(np.uint8)  # row index
    rng = np.random.default_rng(0)
    lefts, tops = set(), set()
    for _ in range(3000):
        crop = crop_context(img, True, rng)
        assert crop.shape == (112, 112, 3)
        lefts.add(int(crop[0, 0, 0]))
        tops.add(int(crop[0, 0, 1]))
    assert lefts == set(range(0, 60)) and tops == set(range(0, 17))


def test_bad_inputs_are_named():
    img = _img()
    with pytest.raises(ValueError, match="rng"):
        preprocess(img, (0, 0, 5, 5), train=True)
    with pytest.raises(ValueError, match="outside"):
        preprocess(img, (100, 100, 120, 120))
    with pytest.raises(ValueError, match="uint8"):
        preprocess(img.astype(np.float32), None)
    assert clip_box((-5, -5, 10, 200), 60, 80) == (0, 0, 10, 60)
