"""The same model behind LitServe, for ``bench.serve --stack litserve`` (the stack comparison).

    python -m bench.serve_litserve CKPT PORT MAX_BATCH MAX_WAIT_MS THREADS

LitServe runs the API in a separate worker process fed through queues and batches there
(``max_batch_size``, ``batch_timeout``). Requests are multipart forms with ``file`` (the image)
and ``boxes`` (JSON); the answer is ``{"faces": [...]}`` as from ``glamor-fast serve``.
"""
from __future__ import annotations

import json
import sys

import litserve as ls


class GlamorAPI(ls.LitAPI):
    def __init__(self, ckpt: str, threads: int, **kw):
        super().__init__(**kw)
        self.ckpt, self.threads = ckpt, threads

    def setup(self, device):
        import cv2
        import torch

        from glamor_fast.serve import Engine

        torch.set_num_threads(self.threads)
        cv2.setNumThreads(1)
        self.engine = Engine(self.ckpt, device="cpu")

    def decode_request(self, request):
        import cv2
        import numpy as np

        data = request["file"].file.read()
        image = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        faces = [(tuple(b), None) for b in json.loads(request["boxes"])]
        return self.engine.prepare(image, faces), faces

    def predict(self, items):
        if self.max_batch_size == 1:
            return self.engine.recognize([items])[0]
        return self.engine.recognize(list(items))

    def batch(self, inputs):
        return inputs

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return {"faces": output}


def main(argv) -> None:
    ckpt, port, max_batch, max_wait_ms, threads = argv
    api = GlamorAPI(ckpt, int(threads), max_batch_size=int(max_batch), batch_timeout=float(max_wait_ms) / 1000.0)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(host="127.0.0.1", port=int(port), log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main(sys.argv[1:])
