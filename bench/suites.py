"""Named sets of GLA shapes for the benchmarks.

A case is (B, Df, Dc, H, W, Hd): face (B, Df), context (B, Dc, H, W), w1 (Hd, Df + Dc).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Case:
    suite: str
    B: int
    Df: int
    Dc: int
    H: int
    W: int
    Hd: int

    @property
    def N(self) -> int:
        return self.H * self.W

    @property
    def name(self) -> str:
        return f"{self.suite}:B{self.B}:{self.H}x{self.W}:D{self.Df}/{self.Dc}:Hd{self.Hd}"

    def as_dict(self) -> dict:
        return {**asdict(self), "N": self.N, "name": self.name}


def _square(n: int) -> tuple[int, int]:
    side = int(round(n ** 0.5))
    assert side * side == n, n
    return side, side


def _scaling(total_cells: int = 16384) -> list[Case]:
    """N from 16 to 16384 cells at fixed B*N, Dc=Df=256, Hd=128."""
    cases = []
    for n in (16, 64, 256, 1024, 4096, 16384):
        H, W = _square(n)
        cases.append(Case("scaling", total_cells // n, 256, 256, H, W, 128))
    return cases


SUITES: dict[str, list[Case]] = {
    # What GLAMOR-Net trains with: 7x7 context cells from the conv5 encoder, 256 channels.
    "paper": [Case("paper", B, 256, 256, 7, 7, 128) for B in (1, 32, 256)],
    # ResNet-style 512-channel maps at 7x7 and 14x14.
    "resnet": [Case("resnet", 32, 512, 512, s, s, 128) for s in (7, 14)],
    # High-resolution context maps.
    "hires": [Case("hires", B, 256, 256, s, s, 128) for B in (8, 32) for s in (28, 56)],
    "scaling": _scaling(),
    # Seconds, for the smoke test.
    "tiny": [Case("tiny", 2, 8, 8, 3, 3, 4), Case("tiny", 3, 16, 12, 4, 5, 8)],
}

# --quick: the cases the performance bars name (paper B=256, hires B=8 at 56x56) plus paper B=32.
QUICK = {
    "paper": [c for c in SUITES["paper"] if c.B in (32, 256)],
    "resnet": SUITES["resnet"][:1],
    "hires": [c for c in SUITES["hires"] if c.B == 8 and c.H == 56],
    "scaling": [c for c in SUITES["scaling"] if c.N in (16, 256, 4096)],
    "tiny": SUITES["tiny"],
}
QUICK["all"] = QUICK["paper"] + QUICK["hires"]


def get_cases(suite: str, quick: bool = False) -> list[Case]:
    """The cases of ``suite`` ("paper", "resnet", "hires", "scaling", "tiny" or "all")."""
    names = [*SUITES, "all"]
    if suite not in names:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(names)}")
    if quick:
        return list(QUICK[suite])
    if suite == "all":
        return [c for s in ("paper", "resnet", "hires", "scaling") for c in SUITES[s]]
    return list(SUITES[suite])
