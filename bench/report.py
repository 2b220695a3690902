"""Markdown tables from the benchmarks' JSON files, for bench/RESULTS.md.

    python -m bench.report --gla gla.json [--model model.json] [--note "text"] > section.md
"""
from __future__ import annotations

import argparse
import json
import sys

MODES = ("fwd", "bwd", "fwdbwd")


def _meta_line(meta: dict) -> str:
    load = meta.get("load_average")
    load = ", ".join(f"{x:.2f}" for x in load) if load else "unknown"
    return (f"{meta['date_utc']} UTC; CPU `{meta['cpu_model']}` ({meta['cpu_count']} cores), {meta['threads']} "
            f"thread(s); load average at start {load}; torch {meta['torch']}, triton {meta['triton']}; "
            f"commit `{meta['git_commit']}`; CUDA devices: {', '.join(meta['cuda_devices']) or 'none'}")


def _ms(r: dict) -> str:
    if "min_s" in r:  # interleaved rounds: median [fastest-slowest round]
        return f"{r['median_s'] * 1e3:.3g} [{r['min_s'] * 1e3:.3g}-{r['max_s'] * 1e3:.3g}]"
    return f"{r['median_s'] * 1e3:.3g} ±{100 * r['iqr_s'] / r['median_s']:.0f}%"


def _ratio_range(r: dict, key: str) -> str:
    v = r["ratios"].get(key)
    if v is None:
        return "-"
    lo_hi = r.get("ratio_spread", {}).get(key)
    return f"{v:.2f}" + (f" [{lo_hi[0]:.2f}-{lo_hi[1]:.2f}]" if lo_hi else "")


def _ratio(r: dict, key: str) -> str:
    v = r["ratios"].get(key)
    return "-" if v is None else f"{v:.2f}"


def gla_markdown(data: dict) -> str:
    out = [f"Measured {_meta_line(data['meta'])}; command `{' '.join(data['meta']['argv'][1:])}`, "
           f"wall time {data['meta'].get('wall_s', float('nan')):.0f} s.", ""]
    for dev in data["devices"].values():
        lim = dev["limits"]
        out += [f"**{dev['device']}** ({dev['device_name']}): same-run copy bandwidth "
                f"{lim['copy_bytes_per_s'] / 1e9:.1f} GB/s, fp32 mm {lim['mm_flops_per_s'] / 1e9:.0f} GFLOP/s"
                f" ({lim['mm_size']}^3). Skipped: "
                + ("; ".join(f"{k} ({v})" for k, v in dev["skipped"].items()) or "none"), "",
                "Times: median of the interleaved rounds [fastest-slowest round]; x best: speed-up over the "
                "fastest unfused baseline of the case (median of per-round ratios [range]).", "",
                "| case | backend | fwd ms | bwd ms | fwd+bwd ms | fwd x best | f+b x best | fwd x eager | "
                "f+b x eager | mem fwd MB | mem f+b MB | mem f+b / eager | roofline fwd | roofline bwd | roofline f+b "
                "| fwd / mm |",
                "|" + "---|" * 16]
        for c in dev["cases"]:
            for name, r in c["backends"].items():
                wrong = " **WRONG**" if r.get("wrong") else ""
                out.append(
                    f"| {c['case']['name']} | {name}{wrong} | {_ms(r['fwd'])} | {_ms(r['bwd'])} | {_ms(r['fwdbwd'])} | "
                    f"{_ratio_range(r, 'speedup_vs_best_fwd')} | {_ratio_range(r, 'speedup_vs_best_fwdbwd')} | "
                    f"{_ratio(r, 'speedup_vs_eager_fwd')} | {_ratio(r, 'speedup_vs_eager_fwdbwd')} | "
                    f"{r['mem_fwd_bytes'] / 1e6:.2f} | {r['mem_fwdbwd_bytes'] / 1e6:.2f} | "
                    f"{_ratio(r, 'mem_fwdbwd_vs_eager')} | {r['fwd']['roofline']['fraction']:.2f} | "
                    f"{r['bwd']['roofline']['fraction']:.2f} | "
                    f"{r['fwdbwd']['roofline']['fraction']:.2f} | {_ratio_range(r, 'fwd_over_mm')} |")
            out.append(f"| {c['case']['name']} | torch.mm alone | {_ms(c['mm'])} | | | | | | | | | | | | | |")
        out.append("")
        if dev.get("bars"):
            out += ["The issue's CPU bars on this run:", ""]
            out += [f"- {'met' if b['met'] else '**missed**'}: {b['backend']} {b['case']} {b['bar']} "
                    f"(measured {b['value']:.2f}"
                    + (f", rounds {b['spread'][0]:.2f}-{b['spread'][1]:.2f})" if b.get("spread") else ")")
                    for b in dev["bars"]]
            out.append("")
    return "\n".join(out)


def model_markdown(data: dict) -> str:
    m = data["meta"]
    out = [f"Measured {_meta_line(m)}; preset `{m['preset']}`, batch {m['batch']}, {m['steps']} timed steps "
           f"per setting; command `{' '.join(m['argv'][1:])}`, wall time {m.get('wall_s', float('nan')):.0f} s.", "",
           "| mode | settings | images/s (wall) | step ms (IQR) | images per CPU-second | peak extra MB | warm-up s |",
           "|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        out.append(f"| {r['mode']} | {r['label']} | {r['images_per_s']:.1f} | {r['median_s'] * 1e3:.0f} "
                   f"({100 * r['iqr_s'] / r['median_s']:.0f}%) | {r.get('images_per_cpu_s', float('nan')):.1f} | "
                   f"{r['peak_extra_bytes'] / 1e6:.0f} | {r['warmup_s']:.1f} |")
    if data.get("profile"):
        out += ["", "Profile of one eager step (ms):", ""]
        for mode, d in data["profile"].items():
            out.append(f"- {mode}: " + ", ".join(
                f"{k} {v * 1e3:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items()))
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    p.add_argument("--gla", default=None, help="JSON written by python -m bench.gla --json")
    p.add_argument("--model", default=None, help="JSON written by python -m bench.model --json")
    args = p.parse_args(argv)
    if args.gla:
        with open(args.gla) as f:
            print(gla_markdown(json.load(f)))
    if args.model:
        with open(args.model) as f:
            print(model_markdown(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
