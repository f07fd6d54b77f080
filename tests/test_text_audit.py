"""Text-to-image audits from pipeline folders (issue 14): SD and SDXL pairs, BK-SDM-style UNet swaps,
guidance-distilled (LCM-style) students, and the audit's sampler against the pipeline's own generation.

Every pipeline is tiny, random and saved locally by ``tests/tiny_pipelines.py``; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import tiny_pipelines as tiny  # noqa: E402

from guidegap.cli.main import main  # noqa: E402
from guidegap.pipelines import audit_generators, audit_pipelines  # noqa: E402
from guidegap.pipelines.prompts import default_prompts  # noqa: E402
from guidegap.pipelines.text_audit import prompt_denoiser  # noqa: E402
from guidegap.recording.sampler import sample  # noqa: E402
from guidegap.results import load_dataset  # noqa: E402

torch.set_num_threads(1)
STEPS = 3


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    tiny.sd_pipeline(root / "sd")
    # A collapsed student with its own, wider text encoder: its UNet's cross attention reads no text.
    wide = tiny.text_encoder(hidden=24, seed=3)
    tiny.sd_pipeline(root / "sd-collapsed", encoder=wide, denoiser=tiny.ignore_text(tiny.unet(24, seed=5)))
    tiny.sdxl_pipeline(root / "sdxl")
    tiny.sdxl_pipeline(root / "sdxl-collapsed", denoiser=tiny.ignore_text(tiny.sdxl_unet(seed=4)))
    tiny.lcm_pipeline(root / "lcm")
    tiny.lcm_pipeline(root / "lcm-inert", inert=True)
    bk_sdm = root / "bk-sdm-copy"  # BK-SDM ships a unet/ to put into the teacher's pipeline
    shutil.copytree(root / "sd" / "unet", bk_sdm / "unet")
    tiny.pixart_pipeline(root / "pixart")
    tiny.pixart_pipeline(root / "pixart-collapsed", denoiser=tiny.ignore_text_pixart(tiny.pixart_transformer(seed=5)))
    tiny.pixart_pipeline(root / "pixart-sigma", sigma=True)
    # PixArt-Alpha's 1024-px family (sample_size 128) takes resolution and aspect ratio (width a multiple of 3, as
    # their embeddings split it); patch 16 keeps it 8 x 8 tokens.
    tiny.pixart_pipeline(root / "pixart-1024", denoiser=tiny.pixart_transformer(
        sample_size=128, patch_size=16, num_attention_heads=3, cross_attention_dim=24))
    shutil.copytree(root / "pixart" / "transformer", root / "pixart-copy" / "transformer")
    tiny.sd3_pipeline(root / "sd3")
    tiny.sd3_pipeline(root / "sd3-collapsed", denoiser=tiny.ignore_text_sd3(tiny.sd3_transformer(seed=5)))
    tiny.prompts_file(root)
    return root


def cli(capsys, *args):
    code = main(["audit", *map(str, args), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def json_audit(capsys, folders, student: str, teacher: str, *extra):
    """``guidegap audit folders/STUDENT --teacher folders/TEACHER --prompts ... --json``: (exit code, JSON or None, stderr)."""
    code, out, err = cli(capsys, folders / student, "--teacher", folders / teacher, "--prompts", folders / "prompts.txt",
                         "--num-steps", STEPS, "--json", *extra)
    return code, json.loads(out) if out.strip() else None, err


def test_cli_audits_a_bk_sdm_style_copy_of_the_teacher_as_healthy(folders, capsys, tmp_path):
    out_file, figure = tmp_path / "audit.nc", tmp_path / "audit.png"
    code, out, err = cli(capsys, folders / "bk-sdm-copy", "--teacher", folders / "sd", "--prompts", folders / "prompts.txt",
                         "--num-steps", STEPS, "--json", "--out", out_file, "--figure", figure)
    assert code == 0, err
    result = json.loads(out)
    assert result["verdict"] == "healthy"
    assert result["rho"] == 1.0 and result["gap_mse"] == 0.0
    assert result["config"]["guidance"] == {"kind": "constant", "scale": 7.5}  # StableDiffusionPipeline's default w
    assert result["config"]["scheduler"]["class"] == "DDIMScheduler"  # the folder's scheduler
    assert result["student"].endswith("bk-sdm-copy in " + str(folders / "sd"))
    ds = load_dataset(out_file)
    assert json.loads(ds.attrs["prompts"]) == tiny.PROMPTS
    assert json.loads(ds.attrs["null_condition"]) == {"student": "empty prompt '', encoded", "teacher": "empty prompt '', encoded"}
    np.testing.assert_array_equal(ds.label, [0, 1, 2])
    assert ds.sizes == {"model": 2, "sample": 3, "step": STEPS}
    assert figure.stat().st_size > 10_000
    # The human report names the prompts.
    code, out, _ = cli(capsys, folders / "bk-sdm-copy", "--teacher", folders / "sd", "--prompts", folders / "prompts.txt",
                       "--num-steps", 2)
    assert code == 0 and "by prompt (rho, lowest first)" in out and "a blue house" in out


def test_cli_finds_a_collapsed_sd_student_that_has_its_own_text_encoder(folders, capsys):
    code, out, err = cli(capsys, folders / "sd-collapsed", "--teacher", folders / "sd", "--num-steps", STEPS,
                         "--num-samples", 2, "--guidance-scale", 5, "--negative-prompt", "blurry", "--json")
    assert code == 1, err
    result = json.loads(out)
    assert result["verdict"] == "collapsed"
    assert result["prompts"] == default_prompts() and result["null_condition"]["teacher"] == "negative prompt 'blurry', encoded"
    assert result["rho"] == 0.0  # prompt and empty prompt give bit-identical predictions
    assert result["config"]["models"]["student"]["embedding_shape"] == [tiny.TOKENS, 24]  # its own encoder
    assert result["config"]["models"]["teacher"]["embedding_shape"] == [tiny.TOKENS, 16]
    assert result["config"]["num_samples"] == 2  # two of the eight default prompts


def test_cli_audits_an_sdxl_pair_with_the_zeros_null_condition(folders, capsys, tmp_path):
    out_file = tmp_path / "sdxl.nc"
    code, result, err = json_audit(capsys, folders, "sdxl-collapsed", "sdxl", "--out", out_file)
    assert code == 1, err
    assert result["verdict"] == "collapsed" and result["rho"] == 0.0
    assert result["config"]["models"]["teacher"]["added_inputs"] == ["text_embeds", "time_ids"]
    nulls = json.loads(load_dataset(out_file).attrs["null_condition"])
    assert nulls["teacher"] == nulls["student"] == "zeros (the pipeline's force_zeros_for_empty_prompt)"
    healthy = audit_pipelines(folders / "sdxl", folders / "sdxl", prompts=tiny.PROMPTS[:2], num_steps=2, n_boot=50)
    assert healthy.verdict == "healthy" and healthy.summary["rho"].value == 1.0
    teacher_gap = float(healthy.dataset.gap_norm.sel(model="teacher").min())
    assert teacher_gap > 1e-4  # the zeros null branch differs from every prompt's


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "pixart", "pixart-sigma", "pixart-1024"])
def test_the_audits_guided_sampler_reproduces_the_pipelines_own_latents(folders, family):
    """Same seed, scheduler and w: the audit's trajectories are the ones the pipeline generates (DDIM; SD3's flow
    matching; PixArt-Alpha/Sigma's DPM-Solver++ with learned sigma, and the 1024-px family's resolution inputs)."""
    from guidegap.pipelines.folders import load_pipeline
    from guidegap.recording.trajectory import trace

    pipe, w, seed = load_pipeline(folders / family).pipe, 5.0, 3
    denoiser, _ = prompt_denoiser(pipe, tiny.PROMPTS)
    latents_per_step = []

    def keep(pipeline, step, timestep, tensors):
        latents_per_step.append(tensors["latents"].clone())
        return tensors

    # PixArt takes the older per-step callback; its resolution binning knows only 256-2048 px images.
    each_step = (dict(callback=lambda i, t, latents: keep(pipe, i, t, {"latents": latents}), use_resolution_binning=False)
                 if family.startswith("pixart") else dict(callback_on_step_end=keep))
    with torch.no_grad():
        images = pipe(prompt=tiny.PROMPTS, guidance_scale=w, num_inference_steps=4, output_type="latent",
                      generator=audit_generators(seed, len(tiny.PROMPTS)), **each_step).images
    ours = sample(denoiser, range(len(tiny.PROMPTS)), guidance_scale=w, num_steps=4, scheduler=pipe.scheduler,
                  seed=seed, clip=False)
    assert float(images.abs().mean()) > 0.1
    atol = 1e-5 * max(1.0, float(images.abs().max()))  # random PixArt models reach latents of ~100s
    torch.testing.assert_close(ours, images, rtol=1e-5, atol=atol)
    # The recorder's teacher states (what the audit measures at) are the pipeline's latents step by step.
    ds = trace(denoiser, None, num_samples=3, num_steps=4, guidance_scale=w, scheduler=pipe.scheduler, seed=seed,
               keep_predictions=True)
    for k in range(1, 4):
        torch.testing.assert_close(torch.as_tensor(ds.state.isel(model=0, step=k).values), latents_per_step[k - 1],
                                   rtol=1e-5, atol=atol)


def test_a_guidance_distilled_student_is_reported_as_such_never_collapsed(folders, capsys, tmp_path):
    out_file = tmp_path / "lcm.nc"
    code, out, err = cli(capsys, folders / "lcm", "--teacher", folders / "sd", "--prompts", folders / "prompts.txt",
                         "--true-cfg", "--json", "--out", out_file)
    assert code == 1, err  # fails the default --fail-on (everything but healthy), as documented
    result = json.loads(out)
    assert result["verdict"] == "guidance-distilled"
    assert "time_cond_proj_dim = 8" in result["reason"] and "true-CFG probe" in result["reason"]
    assert result["config"]["num_steps"] == 4 and result["config"]["scheduler"]["class"] == "LCMScheduler"
    assert result["response_to_w"] > 1e-3 and result["probe_rel_gap"] > 1e-3
    # The response is RMS(eps(w) - eps(w = 1)) of the pipeline's own w embedding, here at step 0 of prompt 0.
    from guidegap.pipelines.folders import load_pipeline

    pipe = load_pipeline(folders / "lcm").pipe
    ds = load_dataset(out_file)
    with torch.no_grad():
        embeds = pipe.encode_prompt(tiny.PROMPTS[0], "cpu", 1, False)[0]
        x = torch.randn((tiny.LATENT, tiny.SIZE, tiny.SIZE), generator=audit_generators(0, 1)[0])[None]
        t = int(ds.timestep[0])

        def eps(w):
            emb = pipe.get_guidance_scale_embedding(torch.tensor([w - 1.0]), embedding_dim=8)
            return pipe.unet(x, t, encoder_hidden_states=embeds, timestep_cond=emb).sample

        at_w, at_one = eps(8.5), eps(1.0)  # LatentConsistencyModelPipeline's default w
    rms = lambda a: float(a.pow(2).mean().sqrt())  # noqa: E731
    student = ds.sel(model="student").isel(sample=0, step=0)
    assert float(student.gap_norm) == pytest.approx(rms(at_w - at_one), rel=1e-4)
    assert float(student.cond_norm) == pytest.approx(rms(at_w), rel=1e-4)
    # Rebuilt from the file, the verdict stays; an embedding that changes nothing is still not "collapsed".
    code, out, err = cli(capsys, folders / "lcm-inert", "--prompts", folders / "prompts.txt", "--json",
                         "--fail-on", "non-finite")
    assert code == 0, err
    inert = json.loads(out)
    assert inert["verdict"] == "guidance-distilled" and inert["response_to_w"] == 0.0
    assert "almost no effect" in inert["reason"]
    code, out, err = main(["plot", str(out_file), "--figure", str(tmp_path / "lcm.png")]), *capsys.readouterr()
    assert code == 0 and "guidance-distilled" in out


def test_a_flux_style_guidance_embedding_is_recognised_from_the_config():
    from diffusers import FluxTransformer2DModel

    from guidegap.pipelines.conditioning import guidance_embedding_reason

    flux = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
                                  num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
                                  guidance_embeds=True, axes_dims_rope=(2, 2, 4))
    assert "guidance_embeds = true" in guidance_embedding_reason(flux)
    assert guidance_embedding_reason(tiny.unet()) is None


def test_prompt_sets_and_refused_folders(folders, capsys, tmp_path):
    assert len(default_prompts()) == 8 and all(p and not p.startswith("#") for p in default_prompts())
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    code, _, err = cli(capsys, folders / "sd", "--prompts", empty)
    assert code == 2 and "no prompt" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, folders / "sd", "--device", "no-such-device")
    assert code == 2 and "--device" in err
    code, _, err = cli(capsys, folders / "bk-sdm-copy")  # a bare UNet needs a pipeline to go into
    assert code == 2 and "--base PIPELINE" in err
    from guidegap.pipelines.folders import load_pipeline

    half = tmp_path / "fp16-only"  # hub snapshots often ship only *.fp16.safetensors
    load_pipeline(folders / "sd").pipe.to(torch.float16).save_pretrained(str(half), variant="fp16")
    loaded = load_pipeline(half).pipe
    assert loaded.unet.dtype == loaded.text_encoder.dtype == torch.float32
    reference = load_pipeline(folders / "sd").pipe.unet.conv_in.weight
    torch.testing.assert_close(loaded.unet.conv_in.weight, reference.half().float(), rtol=0, atol=0)
    custom = tmp_path / "custom"
    shutil.copytree(folders / "sd", custom)
    index = json.loads((custom / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]  # as SD 1.x folders name it
    (custom / "model_index.json").write_text(json.dumps(index))
    assert audit_pipelines(custom, prompts=tiny.PROMPTS[:1], num_steps=1, n_boot=10).verdict == "inconclusive"
    index["unet"] = ["my_models", "MyUNet"]  # would import code shipped with the folder
    (custom / "model_index.json").write_text(json.dumps(index))
    code, _, err = cli(capsys, custom, "--teacher", folders / "sd")
    assert code == 2 and "does not run code shipped with a model folder" in err


def test_cli_audits_a_pixart_transformer_copy_as_healthy_on_the_eps_channels(folders, capsys, tmp_path):
    """A bare transformer/ goes into the teacher's PixArt pipeline; the gap is taken on the 4 eps channels only."""
    from guidegap.pipelines.folders import load_pipeline

    out_file = tmp_path / "pixart.nc"
    code, result, err = json_audit(capsys, folders, "pixart-copy", "pixart", "--out", out_file)
    assert code == 0, err
    assert result["verdict"] == "healthy" and result["rho"] == 1.0 and result["gap_mse"] == 0.0
    assert result["config"]["guidance"] == {"kind": "constant", "scale": 4.5}  # PixArtAlphaPipeline's default w
    assert result["config"]["scheduler"]["class"] == "DPMSolverMultistepScheduler"
    teacher = result["config"]["models"]["teacher"]
    assert teacher["eps_channels"] == tiny.LATENT and teacher["embedding_shape"] == [120, 16]  # max_sequence_length 120
    assert teacher["inputs"] == ["encoder_attention_mask", "encoder_hidden_states"]
    ds = load_dataset(out_file)
    assert json.loads(ds.attrs["null_condition"])["student"] == "empty prompt '', encoded"
    # The recorded gap at step 0 is RMS of cond - uncond over the eps half of the pipeline's own transformer call.
    pipe = load_pipeline(folders / "pixart").pipe
    with torch.no_grad():
        embeds, mask, null, null_mask = pipe.encode_prompt(tiny.PROMPTS[1], negative_prompt="", device="cpu")
        x = torch.randn((tiny.LATENT, tiny.SIZE, tiny.SIZE), generator=audit_generators(0, 2)[1])[None]
        t = torch.tensor([int(ds.timestep[0])] * 2)
        out = pipe.transformer(torch.cat([x, x]), encoder_hidden_states=torch.cat([null, embeds]), timestep=t,
                               encoder_attention_mask=torch.cat([null_mask, mask]),
                               added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
    assert out.shape[1] == 2 * tiny.LATENT  # eps + learned sigma
    uncond, cond = out[:, : tiny.LATENT].chunk(2)
    expected = float((cond - uncond).pow(2).mean().sqrt())
    assert float(ds.gap_norm.sel(model="teacher").isel(sample=1, step=0)) == pytest.approx(expected, rel=1e-4)
    full = float((out[1] - out[0]).pow(2).mean().sqrt())
    assert abs(full - expected) > 1e-3 * expected  # the sigma half would have changed the number


def test_cli_finds_a_collapsed_pixart_student(folders, capsys):
    code, result, err = json_audit(capsys, folders, "pixart-collapsed", "pixart")
    assert code == 1, err
    assert result["verdict"] == "collapsed" and result["rho"] == 0.0
    assert result["config"]["models"]["student"]["name"] == "student PixArtTransformer2DModel"


def test_cli_audits_sd3_flow_matching_pipelines_on_the_velocity_gap(folders, capsys, tmp_path):
    """SD3 (FlowMatchEulerDiscreteScheduler): no input scaling, unit initial noise; a text-blind student collapses."""
    out_file = tmp_path / "sd3.nc"
    code, result, err = json_audit(capsys, folders, "sd3-collapsed", "sd3", "--out", out_file)
    assert code == 1, err
    assert result["verdict"] == "collapsed" and result["rho"] == 0.0
    assert result["config"]["guidance"] == {"kind": "constant", "scale": 7.0}  # StableDiffusion3Pipeline's default w
    assert result["config"]["scheduler"]["class"] == "FlowMatchEulerDiscreteScheduler"
    teacher = result["config"]["models"]["teacher"]
    assert teacher["inputs"] == ["encoder_hidden_states", "pooled_projections"]
    assert teacher["embedding_shape"] == [tiny.TOKENS + 256, 32]  # CLIP tokens + T5's max_sequence_length 256
    ds = load_dataset(out_file)
    assert ds.attrs["prediction_type"] == "flow_prediction"
    assert float(ds.gap_norm.sel(model="teacher").min()) > 1e-3
    healthy = audit_pipelines(folders / "sd3", folders / "sd3", prompts=tiny.PROMPTS[:2], num_steps=2, n_boot=50)
    assert healthy.verdict == "healthy" and healthy.summary["rho"].value == 1.0
    code, _, err = cli(capsys, folders / "sd3", "--scheduler", "ddim")  # a DDPM-family sampler on a flow schedule
    assert code == 2 and "flow matching" in err and len(err.strip().splitlines()) == 1

