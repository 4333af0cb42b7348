"""The precision of the model pass: what amp="auto" resolves to, and the bf16 path's own checks,
with tolerances that fit bf16 (8 bits of mantissa: relative rounding of about 4e-3 per operation).

bf16 autocast runs on every CPU (emulated where it is not native), so these run on any machine.
"""
import pytest
import torch
from test_render import tiny_cnn
from torch import nn

import phasevis_ext as pv
from phasevis_ext import cpu_kind
from phasevis_ext.checks import InvalidArgument
from phasevis_ext.model.activations import capture
from phasevis_ext.render import settings as render
from phasevis_ext.render.crops import eval_crops
from phasevis_ext.render.objectives import batched_score, channel, logit

OPTIONS = dict(image_size=32, input_size=24, crops=2, progress=False, device="cpu")


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


@pytest.mark.parametrize("bf16, amx, expected", [(True, False, torch.bfloat16), (True, True, torch.bfloat16),
                                                  (False, False, None), ("absent", False, None)])
def test_auto_on_the_cpu_is_bf16_only_where_bf16_is_native(monkeypatch, bf16, amx, expected):
    # the AVX-512-bf16 EPYCs and the AMX Xeon: bf16 faster; AVX2: emulated, slower; a torch without
    # the bf16 probe cannot tell: fp32
    if bf16 == "absent":
        monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    else:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    cpu_kind.native_bf16.cache_clear()
    try:
        assert render._cpu_auto_amp() is expected
    finally:
        monkeypatch.undo()
        cpu_kind.native_bf16.cache_clear()


def test_auto_follows_the_table_of_the_device_type(monkeypatch):
    monkeypatch.setitem(render.AUTO_AMP, "cpu", None)
    assert render.resolve_amp("auto", "cpu") is None
    monkeypatch.setitem(render.AUTO_AMP, "cpu", torch.bfloat16)
    assert render.resolve_amp("auto", "cpu") is torch.bfloat16
    assert render.resolve_amp("auto", "meta") is None  # a device type nobody measured runs as it is
    assert render.resolve_amp("none", "cpu") is None and render.resolve_amp("bfloat16", "cpu") is torch.bfloat16


@pytest.mark.parametrize("amp", ["fast", torch.float32, 16])
def test_bad_amp_names_the_argument(model, amp):
    with pytest.raises(InvalidArgument, match="^amp must be"):
        pv.visualize(model, "logit:1", steps=1, amp=amp, **OPTIONS)


@pytest.mark.parametrize("amp, dtype", [("none", torch.float32), ("bfloat16", torch.bfloat16)])
def test_the_model_pass_runs_in_the_precision_asked_for(model, amp, dtype):
    seen = []
    handle = model.conv2.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        result = pv.visualize(model, "logit:1", steps=2, amp=amp, **OPTIONS)
    finally:
        handle.remove()
    # The last three passes are the 2 steps and the final scoring (one pass each: 2 crops of 1 unit);
    # what runs before them are checks on the model, outside the loop.
    assert len(seen) >= 3 and seen[-3:] == [dtype] * 3
    assert result.images.dtype == result.scores.dtype == result.history.dtype == torch.float32
    assert result.settings["amp"] == (None if amp == "none" else "bfloat16")


def test_bf16_scores_are_the_fp32_scores_within_bf16_rounding(model):
    objectives = [logit(2), channel("conv2", 5)]
    result = pv.visualize(model, objectives, steps=6, amp="bfloat16", box_size=(0.5, 1.0), **OPTIONS)
    crops = eval_crops(result.images, 24, (0.5, 1.0))
    with capture(model, ["conv2"], need_logits=True) as cap, torch.no_grad():
        fp32 = batched_score(objectives, cap.run(crops), crops.shape[0] // 2)
    torch.testing.assert_close(result.scores, fp32, rtol=3e-2, atol=3e-2)
    assert not torch.allclose(result.scores, fp32, rtol=1e-6, atol=0)  # the scores did come from bf16


def test_the_bf16_gradient_points_where_the_fp32_one_does(model):
    """One step's image gradient: bf16 autocast may round it, not turn it."""
    images = torch.rand(4, 3, 24, 24)

    def gradient(dtype):
        x = images.clone().requires_grad_()
        with capture(model, ["conv2"], need_logits=True) as cap, \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
            scores = batched_score([logit(3), channel("conv2", 1)], cap.run(x), 2)
        scores.float().sum().backward()
        return x.grad.flatten()

    fp32, bf16 = gradient(torch.float32), gradient(torch.bfloat16)
    assert torch.nn.functional.cosine_similarity(fp32, bf16, dim=0) > 0.99
    assert not torch.equal(fp32, bf16)


def test_bf16_runs_raise_their_scores(model):
    """Over 24 steps, the last steps' scores beat the first ones' for every unit, in visualize and
    in accentuation (a step's score under bf16 is noisier than fp32's, so means of 4 steps)."""
    result = pv.visualize(model, ["logit:1", "conv2:3"], steps=24, amp="bfloat16", **OPTIONS)
    assert (result.history[-4:].mean(0) > result.history[:4].mean(0)).all()
    photos = nn.functional.avg_pool2d(torch.rand(3, 3, 36, 36, generator=torch.Generator().manual_seed(1)), 5,
                                      stride=1).clamp(0.02, 0.98)
    accented = pv.accentuate(model, photos, "logit:3", steps=24, penalty=0.0, amp="bfloat16",
                             **{k: v for k, v in OPTIONS.items() if k != "image_size"})
    assert (accented.history[-4:].mean(0) > accented.history[:4].mean(0)).all()
