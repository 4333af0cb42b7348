"""Each native op's argument errors, one fresh process per case: does it raise or crash?"""
import subprocess
import sys

PRELUDE = "import torch, phasevis_ext as pv; from phasevis_ext import ops; im = torch.rand(2, 3, 8, 8)\n"
CASES = {
    "crop index": "ops.crop_resize_op(im, torch.tensor([[2.0, 0, 0, 4, 4]]), 4)",
    "crop fractional index": "ops.crop_resize_op(im, torch.tensor([[0.5, 0, 0, 4, 4]]), 4)",
    "crop nan": "ops.crop_resize_op(im, torch.tensor([[0.0, 0, float('nan'), 4, 4]]), 4)",
    "crop shape": "ops.crop_resize_op(im, torch.tensor([[0.0, 0, 0, 4]]), 4)",
    "crop dtype": "ops.crop_resize_op(im, torch.tensor([[0.0, 0, 0, 4, 4]], dtype=torch.float64), 4)",
    "crop ok": "ops.crop_resize_op(im, torch.tensor([[1.0, 0, 0, 4, 4]]), 4)",
    "crop raw op index": "torch.ops.phasevis.crop_resize(im, torch.tensor([[2.0, 0, 0, 4, 4]]), 4)",
    "synthesis raw op shape": "torch.ops.phasevis.maco_synthesis(torch.rand(1, 3, 8, 5), torch.rand(3, 8, 4), 8, 8, 0.0, 1.0, "
                              "pv.default_color_matrix(3), 1e-4)",
    "plain TORCH_CHECK in aten": "torch.ops.aten.mm(torch.rand(2, 3), torch.rand(2, 3))",
}
for name, code in CASES.items():
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", PRELUDE + code], capture_output=True, text=True)
    last = (run.stderr.strip().splitlines() or [""])[-1][:160]
    print(f"{name}: rc={run.returncode} {last}", flush=True)
