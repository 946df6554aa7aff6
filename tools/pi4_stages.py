"""The stages of the Cortex-A72 check, run once natively (x86) and once under QEMU (aarch64).

Each stage builds its inputs from a fixed seed with numpy's PCG64 ``random()`` (integer
arithmetic, so bit-identical on every CPU; torch's and numpy's normal samplers are not), runs
one piece of the stack and returns named arrays. ``tools/pi4_check.py`` compares the two runs:
masks and shapes exactly, outputs within :data:`STAGES`' tolerance.

Run: ``python tools/pi4_stages.py OUT [--quick] [--pte-from DIR] [--only a,b]``. OUT gets
``progress.jsonl`` (one line when a stage starts and one when it ends, so a stage that kills
the interpreter, e.g. with SIGILL, is named), ``<stage>.npz`` arrays and ``.pte`` programs.
Timings are recorded for the log only; under emulation they say nothing about speed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Stage:
    """One check: the package it exercises, its tolerance against x86, whether --quick runs it.

    ``rel_tol`` is relative to the x86 output's largest magnitude (int8 stages); ``atol`` is
    absolute; keys ending in ``mask``, ``shape`` or ``sha`` must match exactly.
    """

    name: str
    package: str
    atol: float = 1e-5
    rel_tol: float = 0.0
    quick: bool = True


STAGES: tuple[Stage, ...] = (
    Stage("imports", "all"),
    Stage("torch_forward", "torch"),
    Stage("prune_masks", "torch"),
    Stage("sweep_2_steps", "torch", quick=False),
    Stage("onnx_export", "torch/onnx"),
    Stage("ort_fp32", "onnxruntime"),
    Stage("ort_int8_dynamic", "onnxruntime", rel_tol=0.02),
    Stage("ort_int8_static_qdq", "onnxruntime", rel_tol=0.02),
    Stage("torch_int8_qnnpack", "torch", rel_tol=0.02),
    Stage("structured_shrink", "torch"),
    Stage("compact_roundtrip", "prunelib", quick=False),
    Stage("executorch_fp32", "executorch"),
    Stage("executorch_int8", "executorch", rel_tol=0.02),
    Stage("executorch_lower", "executorch", quick=False),
)
BY_NAME = {s.name: s for s in STAGES}
SEED = 16


def uniform(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """Float32 values in [-scale, scale) that are bit-identical on every platform."""
    return ((np.random.default_rng(seed).random(shape) * 2.0 - 1.0) * scale).astype(np.float32)


def _fill(model, seed: int):
    """Overwrite every parameter of ``model`` with :func:`uniform` values (He-like scale)."""
    import torch

    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            fan_in = p.shape[1] * int(np.prod(p.shape[2:])) if p.dim() > 1 else p.shape[0]
            p.copy_(torch.from_numpy(uniform(seed + i, tuple(p.shape), (3.0 / fan_in) ** 0.5)))
    return model.eval()


def _mlp():
    from prunelib.families.mlp.models import MLP

    return _fill(MLP(784, (128, 64), 10), SEED)


def _conv():
    """A DS-CNN-like net (conv, depthwise, pointwise, pool, linear) with fixed weights."""
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    return _fill(net, SEED + 100)


def _x(shape: tuple[int, ...], seed: int = SEED + 1000):
    import torch

    return torch.from_numpy(uniform(seed, shape))


def _pruned_mlp(amount: float = 0.8):
    from prunelib.pruning.criteria import magnitude_prune
    from prunelib.pruning.params import linear_and_conv_weights

    model = _mlp()
    magnitude_prune(linear_and_conv_weights(model), amount)  # prune.global_unstructured, L1
    return model


def _np(t) -> np.ndarray:
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _onnx(model, x) -> bytes:
    from prunelib.families.mlp.family import MlpFamily

    family = MlpFamily()  # its export is the contract's default: TorchScript exporter, dynamic batch
    return family.export_onnx(family.deploy(model, structured=False), x)


def _ort(onnx_bytes: bytes, x) -> np.ndarray:
    from prunelib.deploy.onnx import ort_session

    sess = ort_session(onnx_bytes, threads=1)
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def stage_imports(info: dict, ctx: dict) -> dict:
    """Import each package in turn, logging which one is being imported (a SIGILL names it)."""
    import importlib
    import importlib.metadata as md

    for module in (
        "numpy",
        "torch",
        "onnx",
        "onnxruntime",
        "torchao",
        "executorch.runtime",
        "prunelib.storage.compact",
        "prunelib.deploy.executorch",
        "prunelib.deploy.precision",
        "prunelib.deploy.runtimes",
        "prunelib.pruning.neurons",
    ):
        ctx["step"](module.split(".")[0])
        importlib.import_module(module)
    import onnxruntime
    import torch

    import prunelib.deploy.precision

    for name in ("torch", "numpy", "onnx", "onnxruntime", "executorch", "torchao"):
        info[name] = md.version(name)
    info["machine"] = platform.machine()
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["ort_providers"] = ",".join(onnxruntime.get_available_providers())
    info["quantized_engine"] = prunelib.deploy.precision.quantized_engine()
    if platform.machine() == "aarch64" and info["quantized_engine"] != "qnnpack":
        raise RuntimeError(f"prunelib picked quantized engine {info['quantized_engine']!r} on aarch64; want qnnpack")
    return {}


def stage_torch_forward(info: dict) -> dict:
    import torch

    with torch.no_grad():
        return {"mlp_out": _np(_mlp()(_x((8, 784)))), "conv_out": _np(_conv()(_x((2, 1, 16, 16))))}


def stage_prune_masks(info: dict) -> dict:
    import torch

    model = _pruned_mlp()
    out = {f"{n}.mask": _np(b).astype(bool) for n, b in model.named_buffers() if n.endswith("_mask")}
    with torch.no_grad():
        out["pruned_out"] = _np(model(_x((8, 784))))
    info["sparsity"] = round(
        1
        - sum(int(m.sum()) for k, m in out.items() if k.endswith("mask"))
        / sum(m.size for k, m in out.items() if k.endswith("mask")),
        4,
    )
    return out


def stage_sweep_2_steps(info: dict) -> dict:
    """Two iterations of prune (global L1) then two SGD steps, as a quick sweep does."""
    import torch

    from prunelib.pruning.criteria import magnitude_prune
    from prunelib.pruning.params import linear_and_conv_weights

    model, out = _mlp(), {}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = _x((64, 784))
    y = torch.from_numpy((np.random.default_rng(SEED).integers(0, 10, 64)).astype(np.int64))
    for it in range(2):
        magnitude_prune(linear_and_conv_weights(model), 0.5)
        for n, b in model.named_buffers():
            out[f"it{it}.{n}.mask"] = _np(b).astype(bool)
        model.train()
        for _ in range(2):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        out[f"it{it}.loss"] = np.array([float(loss)], dtype=np.float32)
    with torch.no_grad():
        out["out"] = _np(model.eval()(x))
    return out


def stage_onnx_export(info: dict, ctx: dict) -> dict:
    import onnx

    ctx["onnx"] = onnx_bytes = _onnx(_pruned_mlp(), _x((8, 784)))
    proto = onnx.load_from_string(onnx_bytes)
    info["ops"] = ",".join(n.op_type for n in proto.graph.node)
    ops_sha = hashlib.sha256(info["ops"].encode()).hexdigest()[:16]
    out = {"ops.sha": np.array([ops_sha])}
    for init in proto.graph.initializer:
        out[f"init.{init.name}"] = onnx.numpy_helper.to_array(init)
    return out


def stage_ort_fp32(info: dict, ctx: dict) -> dict:
    onnx_bytes = ctx.get("onnx") or _onnx(_pruned_mlp(), _x((8, 784)))
    return {"out": _ort(onnx_bytes, _x((8, 784)))}


def stage_ort_int8_dynamic(info: dict, ctx: dict) -> dict:
    """MatMul (the MLP, prunelib's path) and Conv (ConvInteger) dynamic int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from prunelib.deploy.onnx import quantize_onnx_int8

    onnx_bytes = ctx.get("onnx") or _onnx(_pruned_mlp(), _x((8, 784)))
    out = {"mlp_out": _ort(quantize_onnx_int8(onnx_bytes), _x((8, 784)))}
    x = _x((2, 1, 16, 16))
    src, dst = ctx["tmp"] / "conv.onnx", ctx["tmp"] / "conv_dyn.onnx"
    src.write_bytes(_onnx(_conv(), x))
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
    out["conv_out"] = _ort(dst.read_bytes(), x)
    return out


def stage_ort_int8_static_qdq(info: dict, ctx: dict) -> dict:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    x = _x((2, 1, 16, 16))
    batches = [{"input": _x((2, 1, 16, 16), SEED + 2000 + i).numpy()} for i in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    src, dst = ctx["tmp"] / "conv.onnx", ctx["tmp"] / "conv_qdq.onnx"
    src.write_bytes(_onnx(_conv(), x))
    # 7-bit weights on both machines: an x86 host without VNNI adds u8 x s8 products pairwise in 16 bits with
    # saturation, so with 8-bit weights its reference itself was off (3.7 % of the largest output on AVX2,
    # where the Pi's Cortex-A72 is exact); with 7 bits both compute the same products.
    quantize_static(
        src, dst, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8, reduce_range=True,
    )  # fmt: skip
    return {"conv_out": _ort(dst.read_bytes(), x)}


def stage_torch_int8_qnnpack(info: dict) -> dict:
    """prunelib's dynamic int8 (torch.ao), with the qnnpack engine on both machines (same kernels).

    On aarch64 prunelib picks qnnpack itself (the default there, ``x86``, raises); on x86 it is
    forced here so that both runs compute the same thing.
    """
    import torch

    from prunelib.deploy.precision import dynamic_int8, quantized_engine

    info["prunelib_engine"] = quantized_engine()
    torch.backends.quantized.engine = "qnnpack"
    import prunelib.deploy.precision as q

    original, q.quantized_engine = q.quantized_engine, lambda: "qnnpack"  # keep the forced engine
    try:
        model = dynamic_int8(_pruned_mlp())
    finally:
        q.quantized_engine = original
    info["engine"] = torch.backends.quantized.engine
    with torch.no_grad():
        return {"out": _np(model(_x((8, 784))))}


def stage_structured_shrink(info: dict) -> dict:
    import torch

    from prunelib.families.mlp.family import MlpFamily

    family, model = MlpFamily(), _mlp()
    for _ in range(2):
        family.structured_step(model, 0.5, 0)
    small = family.shrink(model)
    with torch.no_grad():
        x = _x((8, 784))
        diff = float((small(x) - model(x)).abs().max())
    info["shrunk_vs_masked"] = diff
    if diff > 1e-5:
        raise RuntimeError(f"shrunk MLP differs from the masked one by {diff:.3g}")
    shape = [p.shape for p in small.parameters()]
    return {"param.shape": np.array([s for t in shape for s in t]), "out": _np(small(x))}


def stage_compact_roundtrip(info: dict, ctx: dict) -> dict:
    import torch

    from prunelib.storage.compact import load_compact, save_compact
    from prunelib.storage.modelfile import model_tensors

    tensors = model_tensors(_pruned_mlp())
    path = ctx["tmp"] / "model.compact"
    stats = save_compact(tensors, path, precision="fp32")
    back = load_compact(path)
    bad = [k for k in tensors if not torch.equal(tensors[k], back[k])]
    if bad:
        raise RuntimeError(f"compact round trip changed {bad}")
    info["compact_bytes"] = path.stat().st_size
    info["compact_vs_dense"] = f"{stats.disk_compact_bytes}/{stats.disk_dense_bytes}"
    # safetensors writes its metadata map in hash order (varies per process, even on one
    # machine), so the file is compared by content: sorted header JSON and tensor payloads.
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    canonical = json.dumps(header, sort_keys=True).encode() + data[8 + n :]
    return {"content.sha": np.array([hashlib.sha256(canonical).hexdigest()]), "file_bytes.shape": np.array([len(data)])}


def _pte_pair(ctx: dict) -> dict[str, bytes]:
    """The x86-lowered programs (``--pte-from``) or, natively, freshly lowered ones."""
    from prunelib.deploy.executorch import PteConfig, to_pte

    if "ptes" not in ctx:
        src: Path | None = ctx.get("pte_from")
        if src is not None:
            ctx["ptes"] = {k: (src / f"{k}.pte").read_bytes() for k in ("fp32", "int8")}
        else:
            conv, x = _conv(), _x((1, 1, 16, 16))
            calib = [_x((1, 1, 16, 16), SEED + 3000 + i) for i in range(8)]
            ctx["ptes"] = {"fp32": to_pte(conv, x), "int8": to_pte(conv, x, PteConfig("int8"), calibration=calib)}
        for k, v in ctx["ptes"].items():
            (ctx["out"] / f"{k}.pte").write_bytes(v)
    return ctx["ptes"]


def _run_pte(precision: str, info: dict, ctx: dict) -> dict:
    from prunelib.deploy.executorch import pte_runner

    pte = _pte_pair(ctx)[precision]
    info["pte_bytes"] = len(pte)
    return {"conv_out": _np(pte_runner(pte, threads=1)(_x((1, 1, 16, 16))))}


def stage_executorch_fp32(info: dict, ctx: dict) -> dict:
    return _run_pte("fp32", info, ctx)


def stage_executorch_int8(info: dict, ctx: dict) -> dict:
    return _run_pte("int8", info, ctx)


def stage_executorch_lower(info: dict, ctx: dict) -> dict:
    """Lower the fp32 conv net on this machine (runs flatc) and hash the program."""
    from prunelib.deploy.executorch import to_pte

    pte = to_pte(_conv(), _x((1, 1, 16, 16)))
    info["pte_bytes"] = len(pte)
    return {"fp32_pte.sha": np.array([hashlib.sha256(pte).hexdigest()])}


def run(out: Path, names: list[str], pte_from: Path | None) -> None:
    """Run ``names`` in order, appending progress to ``out/progress.jsonl``; never raises."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    log = (out / "progress.jsonl").open("a", encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = {"tmp": Path(tmp), "out": out, "pte_from": pte_from}
        for name in names:

            def step(what: str, name: str = name) -> None:
                log.write(json.dumps({"step": name, "package": what}) + "\n")
                log.flush()

            ctx["step"] = step
            log.write(json.dumps({"start": name}) + "\n")
            log.flush()
            fn: Callable = globals()[f"stage_{name}"]
            info: dict = {}
            t0 = time.perf_counter()
            try:
                arrays = fn(info, ctx) if fn.__code__.co_argcount == 2 else fn(info)
                buf = io.BytesIO()
                np.savez(buf, **arrays)
                (out / f"{name}.npz").write_bytes(buf.getvalue())
                error = None
            except Exception as exc:  # a stage's failure is a result, not a crash  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"[:400]
                info["traceback"] = traceback.format_exc()[-1500:]
            log.write(
                json.dumps(
                    {"done": name, "error": error, "info": info, "seconds": round(time.perf_counter() - t0, 2)},
                    default=str,
                )
                + "\n"
            )
            log.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--quick", action="store_true", help="only the stages marked quick")
    ap.add_argument("--only", default="", help="comma-separated stage names (overrides --quick)")
    ap.add_argument("--pte-from", type=Path, default=None, help="run these fp32.pte/int8.pte")
    args = ap.parse_args(argv)
    names = [s.name for s in STAGES if s.quick or not args.quick]
    if args.only:
        names = [n for n in args.only.split(",") if n]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; known: {list(BY_NAME)}")
    import torch

    torch.set_num_threads(1)
    run(args.out, names, args.pte_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
