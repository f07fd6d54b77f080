"""guidegap.record inside unmodified diffusers pipelines, pair mode and text-conditioned audits (issue 6, part 1).

Tiny random models: a DiTPipeline (cond half first, null class 1000, learned sigma), a StableDiffusionPipeline
(uncond half first; needs transformers only to import, the text encoder is replaced by given embeddings) and
bare UNet2DConditionModel / DiT calls, including separate cond/uncond calls labelled by diffusers' cache_context.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import guidegap
from guidegap.errors import GuidegapError, InputError
from guidegap.metrics import gap_norm as gap_norm_fn
from guidegap.pipelines import Layout, record, record_pair
from guidegap.recording.hooks import HOOK_NAME, HookError

torch.set_num_threads(1)

LATENT = 4  # latent channels of the tiny VAE
STEPS = 5


# -- tiny models ------------------------------------------------------------------------------------
def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1,
                         latent_channels=LATENT, norm_num_groups=4, sample_size=8).eval()


def tiny_dit(seed: int = 0, cls=None, num_classes: int = 1000):
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(seed)
    model = (cls or DiTTransformer2DModel)(
        num_attention_heads=2, attention_head_dim=8, in_channels=LATENT, out_channels=2 * LATENT, num_layers=1,
        sample_size=8, patch_size=2, num_embeds_ada_norm=num_classes, norm_num_groups=1,
    )
    with torch.no_grad():  # ada_norm_zero starts with zeroed projections; give them weights so branches differ
        for param in model.parameters():
            if param.abs().sum() == 0:
                param.normal_(0, 0.02)
    return model.eval()


def null_for_every_class(model):
    """Every LabelEmbedding row set to the null row: the class no longer changes the prediction."""
    from diffusers.models.embeddings import LabelEmbedding

    tables = [m.embedding_table for m in model.modules() if isinstance(m, LabelEmbedding)]
    assert tables
    with torch.no_grad():
        for table in tables:
            table.weight.copy_(table.weight[-1].expand_as(table.weight))
    return model


def dit_pipe(model=None):
    from diffusers import DDIMScheduler, DiTPipeline

    pipe = DiTPipeline(transformer=model if model is not None else tiny_dit(), vae=tiny_vae(),
                       scheduler=DDIMScheduler(clip_sample=False))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_dit(pipe, labels=(1, 2, 3), guidance_scale=4.0):
    return pipe(class_labels=list(labels), guidance_scale=guidance_scale, num_inference_steps=STEPS,
                generator=torch.Generator().manual_seed(0), output_type="np").images


def tiny_text_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=LATENT, out_channels=LATENT, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4,
    ).eval()


def sd_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def embeddings(num_prompts: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_prompts, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)


def sd_pipe():
    pytest.importorskip("transformers")  # StableDiffusionPipeline imports it; no text encoder is used here
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=tiny_vae(), text_encoder=None, tokenizer=None, unet=tiny_text_unet(),
                                   scheduler=sd_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_sd(pipe, prompts, null, **kwargs):
    return pipe(prompt_embeds=prompts, negative_prompt_embeds=null.expand_as(prompts), guidance_scale=5.0,
                num_inference_steps=STEPS, height=8, width=8, generator=torch.Generator().manual_seed(0),
                output_type="np", **kwargs).images


def assert_unhooked(module):
    registry = getattr(module, "_diffusers_hook", None)
    assert registry is None or registry.get_hook(HOOK_NAME) is None
    assert "forward" not in vars(module)


# -- DiTPipeline ------------------------------------------------------------------------------------
def test_dit_pipeline_records_every_step_without_changing_the_images():
    pipe = dit_pipe()
    reference = run_dit(pipe)
    with guidegap.record(pipe, keep_predictions=True) as rec:
        images = run_dit(pipe)
    np.testing.assert_array_equal(images, reference)  # bit for bit
    assert_unhooked(pipe.transformer)
    ds = rec.dataset
    assert ds.sizes == {"model": 1, "sample": 3, "step": STEPS, "channel": LATENT, "height": 8, "width": 8}
    np.testing.assert_array_equal(ds.timestep, pipe.scheduler.timesteps.numpy())
    np.testing.assert_array_equal(ds.label, [1, 2, 3])
    assert ds.attrs["mode"] == "pipeline" and ds.attrs["unguided_calls"] == 0 and ds.attrs["other_calls"] == 0
    for name, var in ds.variables.items():
        assert "long_name" in var.attrs and "units" in var.attrs, name
    assert float(ds.gap_norm.min()) > 1e-3
    # Declared layout: cond half first, null class 1000, eps channels only. Check against direct calls at the
    # recorded state.
    k = 2
    state = torch.as_tensor(ds.state.isel(model=0, step=k).values)
    t = torch.full((3,), int(ds.timestep[k]))
    with torch.no_grad():
        cond = pipe.transformer(state, timestep=t, class_labels=torch.tensor([1, 2, 3])).sample[:, :LATENT]
        uncond = pipe.transformer(state, timestep=t, class_labels=torch.full((3,), 1000)).sample[:, :LATENT]
    np.testing.assert_allclose(ds.pred_cond.isel(model=0, step=k), cond, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ds.pred_uncond.isel(model=0, step=k), uncond, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ds.gap_norm.isel(model=0, step=k), gap_norm_fn(cond, uncond), rtol=1e-4)


def test_predictions_are_not_kept_by_default_and_the_dataset_round_trips(tmp_path):
    pipe = dit_pipe()
    with record(pipe, name="dit") as rec:
        run_dit(pipe, labels=(0, 5))
    ds = rec.dataset
    assert set(ds.data_vars) == {"gap_norm", "cond_norm", "uncond_norm", "parallel_fraction", "nonfinite"}
    assert list(ds.model.values) == ["dit"]
    path = guidegap.save_dataset(ds, tmp_path / "rec.nc")
    back = guidegap.load_dataset(path)
    np.testing.assert_array_equal(back.gap_norm, ds.gap_norm)


def test_class_embeddings_equal_to_the_null_embedding_give_a_zero_gap():
    pipe = dit_pipe(null_for_every_class(tiny_dit()))
    with record(pipe) as rec:
        run_dit(pipe)
    ds = rec.dataset
    assert ds.sizes["step"] == STEPS
    assert float(ds.gap_norm.max()) == 0.0
    assert float(ds.cond_norm.min()) > 0.1


def test_a_pipeline_without_guidance_records_no_step():
    pipe = dit_pipe()
    with record(pipe) as rec:
        run_dit(pipe, labels=(1, 2), guidance_scale=1.0)  # batch B = 2, one branch, must not be split
    assert rec.paired_steps == 0 and rec.unguided_calls == STEPS
    with pytest.raises(InputError, match="no denoiser call carried both"):
        rec.dataset


def test_dit_pipeline_needs_null_class_1000():
    with pytest.raises(InputError, match="class 1000 as the null label"):
        record(dit_pipe(tiny_dit(num_classes=10)))


# -- hooks ------------------------------------------------------------------------------------------
def test_hooks_are_removed_when_the_block_raises():
    pipe = dit_pipe()
    reference = run_dit(pipe)
    with pytest.raises(RuntimeError, match="boom"):
        with record(pipe):
            run_dit(pipe)
            raise RuntimeError("boom")
    assert_unhooked(pipe.transformer)
    np.testing.assert_array_equal(run_dit(pipe), reference)
    # A pipeline that fails inside the block also leaves nothing behind.
    with pytest.raises(Exception):
        with record(pipe):
            pipe(class_labels=[1], num_inference_steps=STEPS, guidance_scale=4.0, generator="not a generator")
    assert_unhooked(pipe.transformer)


def test_recording_twice_on_one_module_is_refused_and_the_first_recording_survives():
    model = tiny_dit(num_classes=4)
    x = torch.randn(2, LATENT, 8, 8)
    with record(model) as outer:
        with pytest.raises(HookError, match="already being recorded.*finish the other"):
            with record(model):
                pass
        with torch.no_grad():
            model(torch.cat([x, x]), timestep=torch.tensor([10] * 4), class_labels=torch.tensor([0, 1, 4, 4]))
    assert outer.paired_steps == 1
    assert_unhooked(model)
    assert isinstance(HookError("x"), GuidegapError)


def test_unknown_pipelines_need_a_declared_layout():
    class MyPipeline:
        unet = tiny_text_unet()

    with pytest.raises(InputError, match="does not know how MyPipeline.*layout="):
        record(MyPipeline())
    assert record(MyPipeline(), layout="uncond-first").layout == Layout("uncond-first")
    with pytest.raises(InputError, match="expected order"):
        Layout("cond-last")
    with pytest.raises(InputError, match="a diffusers pipeline with a `transformer` or `unet`"):
        record(object())


# -- text-conditioned UNet --------------------------------------------------------------------------
def test_stable_diffusion_pipeline_records_uncond_first_without_changing_the_images():
    pipe = sd_pipe()
    prompts, null = embeddings(2)
    reference = run_sd(pipe, prompts, null)
    with record(pipe, keep_predictions=True) as rec:
        images = run_sd(pipe, prompts, null)
    np.testing.assert_array_equal(images, reference)
    assert_unhooked(pipe.unet)
    ds = rec.dataset
    assert ds.sizes["step"] == STEPS and ds.sizes["sample"] == 2
    np.testing.assert_array_equal(ds.label, [-1, -1])  # text-conditioned: no class labels
    np.testing.assert_array_equal(ds.guidance_scale, 5.0)  # read from the pipeline
    k = 1
    state = torch.as_tensor(ds.state.isel(model=0, step=k).values)
    t = int(ds.timestep[k])
    with torch.no_grad():
        cond = pipe.unet(state, t, encoder_hidden_states=prompts).sample
        uncond = pipe.unet(state, t, encoder_hidden_states=null.expand_as(prompts)).sample
    np.testing.assert_allclose(ds.pred_cond.isel(model=0, step=k), cond, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ds.pred_uncond.isel(model=0, step=k), uncond, rtol=1e-4, atol=1e-5)


def test_cfg_cut_off_by_a_callback_is_recorded_as_unguided_calls():
    """The diffusers docs' dynamic-CFG callback: after step 40% the batch halves from 2B to B (here B = 2)."""
    pipe = sd_pipe()
    prompts, null = embeddings(2)

    def cut_off(pipeline, step_index, timestep, callback_kwargs):
        if step_index == int(pipeline.num_timesteps * 0.4):
            callback_kwargs["prompt_embeds"] = callback_kwargs["prompt_embeds"].chunk(2)[-1]
            pipeline._guidance_scale = 0.0
        return callback_kwargs

    options = dict(callback_on_step_end=cut_off, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    reference = run_sd(pipe, prompts, null, **options)
    with record(pipe) as rec:
        images = run_sd(pipe, prompts, null, **options)
    np.testing.assert_array_equal(images, reference)
    guided = int(STEPS * 0.4) + 1
    ds = rec.dataset
    assert ds.sizes == {"model": 1, "sample": 2, "step": guided}
    assert ds.attrs["unguided_calls"] == STEPS - guided
    np.testing.assert_array_equal(ds.timestep, pipe.scheduler.timesteps.numpy()[:guided])


def test_bare_text_unet_calls_with_a_halved_batch_are_not_split():
    unet = tiny_text_unet()
    prompts, null = embeddings(2)
    negative = null.expand_as(prompts)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, LATENT, 8, 8, generator=g)
    expected = []
    with record(unet) as rec, torch.no_grad():
        for t in (900, 500):  # CFG batches, uncond half first (StableDiffusion's declared layout)
            out = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([negative, prompts])).sample
            expected.append(gap_norm_fn(out[2:], out[:2]))
        # CFG cut off: a batch of B = 2 different samples, one branch; an even batch that must not be split.
        unet(torch.randn(2, LATENT, 8, 8, generator=g), 100, encoder_hidden_states=prompts)
    ds = rec.dataset
    assert ds.sizes["step"] == 2 and ds.attrs["unguided_calls"] == 1
    np.testing.assert_array_equal(ds.timestep, [900, 500])
    np.testing.assert_allclose(ds.gap_norm.isel(model=0).T, torch.stack(expected), rtol=1e-6)


# -- separate cond / uncond calls (guider-based and modular pipelines) ------------------------------
def cached_dit():
    """A DiT with diffusers' real CacheMixin (DiTTransformer2DModel does not inherit it), so ``cache_context``
    goes through diffusers' own _set_cache_context / StateManager mechanism."""
    from diffusers import DiTTransformer2DModel
    from diffusers.models.cache_utils import CacheMixin

    class CachedDiT(DiTTransformer2DModel, CacheMixin):
        pass

    return tiny_dit(cls=CachedDiT, num_classes=4)


def test_separate_cond_and_uncond_calls_are_paired_by_cache_context():
    model = cached_dit()
    x = torch.randn(2, LATENT, 8, 8, generator=torch.Generator().manual_seed(0))
    labels, null = torch.tensor([0, 3]), torch.tensor([4, 4])

    def call(name, t, y):
        with model.cache_context(name), torch.no_grad():
            return model(x, timestep=torch.tensor([t, t]), class_labels=y).sample[:, :LATENT]

    expected = []
    with record(model) as rec:  # the contexts are read whatever the layout
        for t in (900, 600):  # modular pipelines: "cond" then "uncond"
            c, u = call("cond", t, labels), call("uncond", t, null)
            expected.append(gap_norm_fn(c, u))
        u, c = call("pred_uncond", 300, null), call("pred_cond", 300, labels)  # a guider's names, other order
        expected.append(gap_norm_fn(c, u))
        call("cond", 100, labels)  # guidance disabled at this step: cond alone
        call("uncond_stg", 100, null)  # another guidance method's branch: not CFG
        call("cond", 50, labels)  # a cond whose partner never comes (flushed on exit)
    ds = rec.dataset
    np.testing.assert_array_equal(ds.timestep, [900, 600, 300])
    np.testing.assert_allclose(ds.gap_norm.isel(model=0).T, torch.stack(expected), rtol=1e-6)
    np.testing.assert_array_equal(ds.label, [0, 3])
    assert ds.attrs["unguided_calls"] == 2 and ds.attrs["other_calls"] == 1
    assert_unhooked(model)
    # Without a context, one 2B batch is split by the declared layout (bare DiT: cond first) ...
    batch = dict(timestep=torch.tensor([900] * 4), class_labels=torch.cat([labels, null]))
    with record(model) as rec, torch.no_grad():
        model(torch.cat([x, x]), **batch)
    np.testing.assert_allclose(rec.dataset.gap_norm.isel(model=0, step=0), expected[0], rtol=1e-5)
    # ... and under Layout("separate") it is not split at all.
    with record(model, layout=Layout("separate")) as rec, torch.no_grad():
        model(torch.cat([x, x]), **batch)
    assert rec.paired_steps == 0 and rec.unguided_calls == 1


# -- pair mode --------------------------------------------------------------------------------------
def test_pair_mode_of_a_pipeline_against_itself_is_healthy():
    pipe = dit_pipe()
    report = record_pair(pipe, pipe, class_labels=[1, 2, 3], num_inference_steps=STEPS, output_type="np", n_boot=100)
    assert report.verdict == "healthy"
    assert report.summary["rho"].value == 1.0
    assert report.summary["cos_delta"].value == pytest.approx(1.0, abs=1e-6)
    ds = report.dataset
    assert ds.sizes == {"model": 2, "sample": 3, "step": STEPS}
    assert float(ds.gap_mse.max()) == 0.0 and float(ds.cond_error.max()) == 0.0
    assert float(ds.divergence[:, :-1].max()) == 0.0 and bool(ds.divergence[:, -1].isnull().all())
    np.testing.assert_array_equal(ds.guidance_scale, 4.0)  # DiTPipeline's default guidance_scale
    assert ds.attrs["verdict"] == "healthy" and ds.attrs["mode"] == "pipeline"
    assert "HEALTHY" in str(report)


def test_pair_mode_finds_a_student_without_a_gap_and_reuses_the_callers_generator():
    teacher, student = dit_pipe(), dit_pipe(null_for_every_class(tiny_dit()))
    generator = torch.Generator().manual_seed(7)
    report = record_pair(teacher, student, class_labels=[1, 2], num_inference_steps=STEPS, output_type="np",
                         generator=generator, n_boot=100)
    assert report.verdict == "collapsed"
    assert report.summary["rho"].value == 0.0
    ds = report.dataset
    # Same initial noise: the two runs start from the same state, then drift apart (free-running).
    assert float(ds.divergence.isel(step=0).max()) > 0.0
    assert float(ds.gap_norm.sel(model="teacher").min()) > 1e-3


# -- text-conditioned audits ------------------------------------------------------------------------
def test_text_audit_of_a_unet_against_itself_and_against_a_null_equal_to_the_prompt():
    unet = tiny_text_unet()
    prompts, null = embeddings(1)
    options = dict(scheduler=sd_scheduler(), num_steps=4, guidance_scale=5.0, num_samples=3, n_boot=100)
    same = guidegap.audit_text(unet, unet, prompts, null, **options)
    assert same.verdict == "healthy"
    assert same.summary["rho"].value == pytest.approx(1.0, abs=1e-12)
    assert same.dataset.sizes == {"model": 2, "sample": 3, "step": 4}
    collapsed = guidegap.audit_text(unet, unet, prompts, null, student_null_embeds=prompts[0], **options)
    assert collapsed.verdict == "collapsed"
    assert float(collapsed.dataset.gap_norm.sel(model="student").max()) == 0.0
    with pytest.raises(InputError, match="null_embeds"):
        guidegap.audit_text(unet, unet, prompts, torch.zeros(1, 5, 8), **options)
