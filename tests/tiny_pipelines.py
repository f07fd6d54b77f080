"""Tiny random text-to-image pipelines saved to folders, for the text-to-image audit tests (no download).

SD-style (CLIP text encoder + UNet2DConditionModel), SDXL-style (two text encoders, pooled embeddings and time ids,
``force_zeros_for_empty_prompt``), LCM-style (a guidance-scale embedding, ``time_cond_proj_dim``) and PixArt-style
(T5 encoder + PixArtTransformer2DModel with learned sigma, DPM-Solver++) and SD3-style (two CLIP encoders and T5,
SD3Transformer2DModel, flow matching). The CLIP tokenizer is built from a
vocabulary file written here: letters, as single characters and word ends; the T5 tokenizer from a Unigram model
over the same letters, with and without T5's word-start marker.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

LATENT, SIZE, TOKENS = 4, 8, 16 # latent channels, latent size (the tiny VAE does not downsample), tokens per prompt
PROMPTS = ["a red cat", "a blue house", "green trees"]


def tokenizer(folder: Path):
    """A CLIPTokenizer from a tiny vocabulary file: every letter, alone and as a word end; no merges."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=TOKENS)


def text_encoder(hidden: int = 16, seed: int = 0, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=54, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=TOKENS, projection_dim=8,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1,
                         latent_channels=LATENT, norm_num_groups=4, sample_size=SIZE).eval()


def unet(cross_attention_dim: int = 16, seed: int = 0, **config):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=LATENT, out_channels=LATENT, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=4, **config,
    ).eval()


def sdxl_unet(seed: int = 0):
    # text_time: add_embedding takes [pooled (8), 6 time ids x 4] = 32; cross attention on both encoders' 16 + 16.
    return unet(32, seed, addition_embed_type="text_time", addition_time_embed_dim=4,
                projection_class_embeddings_input_dim=8 + 6 * 4)


def scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def ignore_text(model):
    """The UNet's cross attention reads no text (value projections zero), and SDXL's pooled text is ignored too:
    the empty-prompt branch equals the prompt branch."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("attn2"):
                module.to_v.weight.zero_()
        if getattr(model, "add_embedding", None) is not None:
            model.add_embedding.linear_1.weight[:, :8].zero_()  # the pooled-text columns
    return model


def sd_pipeline(folder: Path, *, denoiser=None, encoder=None):
    """A StableDiffusionPipeline saved to ``folder``; returns it."""
    from diffusers import StableDiffusionPipeline

    encoder = encoder or text_encoder()
    pipe = StableDiffusionPipeline(vae=vae(), text_encoder=encoder, tokenizer=tokenizer(folder / "vocab"),
                                   unet=denoiser or unet(encoder.config.hidden_size), scheduler=scheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return _saved(pipe, folder)


def sdxl_pipeline(folder: Path, *, denoiser=None):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(vae=vae(), text_encoder=text_encoder(seed=1), tokenizer=tokenizer(folder / "vocab"),
                                     text_encoder_2=text_encoder(seed=2, projection=True),
                                     tokenizer_2=tokenizer(folder / "vocab_2"), unet=denoiser or sdxl_unet(),
                                     scheduler=scheduler(), force_zeros_for_empty_prompt=True)
    return _saved(pipe, folder)


def lcm_pipeline(folder: Path, *, inert: bool = False):
    """An LCM-style pipeline: UNet with a guidance-scale embedding (``time_cond_proj_dim``), LCMScheduler.
    ``inert``: the embedding's projection is zero, so w changes nothing."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler

    model = unet(time_cond_proj_dim=8)
    if inert:
        with torch.no_grad():
            model.time_embedding.cond_proj.weight.zero_()
    pipe = LatentConsistencyModelPipeline(
        vae=vae(), text_encoder=text_encoder(), tokenizer=tokenizer(folder / "vocab"), unet=model,
        scheduler=LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return _saved(pipe, folder)


def t5_tokenizer():
    """A T5-style fast tokenizer (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, appends ``</s>``) from a letters-only Unigram."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_lowercase] + [("\u2581" + c, -2.5) for c in string.ascii_lowercase]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def t5_encoder(d_model: int = 16, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(vocab_size=56, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=1, num_heads=2,
                      relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)
    return T5EncoderModel(config).eval()


def pixart_transformer(seed: int = 0, caption_channels: int = 16, **config):
    """A PixArtTransformer2DModel with learned sigma (8 output channels for 4 latent channels)."""
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(seed)
    options = dict(num_attention_heads=2, attention_head_dim=8, in_channels=LATENT, out_channels=2 * LATENT, num_layers=1,
                   cross_attention_dim=16, caption_channels=caption_channels, sample_size=SIZE, patch_size=2)
    return PixArtTransformer2DModel(**{**options, **config}).eval()


def ignore_text_pixart(model):
    """Cross attention reads no text (value projections zero): the empty-prompt branch equals the prompt branch."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("attn2"):
                module.to_v.weight.zero_()
                module.to_v.bias.zero_()
    return model


def pixart_pipeline(folder: Path, *, denoiser=None, encoder=None, sigma: bool = False):
    """A PixArtAlphaPipeline (or PixArtSigmaPipeline) saved to ``folder``: T5, learned sigma, DPM-Solver++."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtSigmaPipeline

    encoder = encoder or t5_encoder()
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    pipe = cls(tokenizer=t5_tokenizer(), text_encoder=encoder, vae=vae(),
               transformer=denoiser or pixart_transformer(caption_channels=encoder.config.d_model),
               scheduler=DPMSolverMultistepScheduler(beta_schedule="linear", prediction_type="epsilon"))
    return _saved(pipe, folder)


def sd3_transformer(seed: int = 0):
    """An SD3Transformer2DModel on the SD3 encoders below: CLIP 16 + 16 (pooled 8 + 8) and T5 32 wide."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    return SD3Transformer2DModel(sample_size=SIZE, patch_size=2, in_channels=LATENT, out_channels=LATENT, num_layers=1,
                                 attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                 caption_projection_dim=16, pooled_projection_dim=16, pos_embed_max_size=SIZE).eval()


def ignore_text_sd3(model):
    """Image tokens read no text (the text stream's keys and values zero) and the pooled text adds nothing to the
    time embedding: the empty-prompt branch equals the prompt branch."""
    with torch.no_grad():
        for block in model.transformer_blocks:
            for projection in (block.attn.add_k_proj, block.attn.add_v_proj):
                projection.weight.zero_()
                projection.bias.zero_()
        model.time_text_embed.text_embedder.linear_2.weight.zero_()
        model.time_text_embed.text_embedder.linear_2.bias.zero_()
    return model


def sd3_pipeline(folder: Path, *, denoiser=None):
    """A StableDiffusion3Pipeline saved to ``folder``: FlowMatchEulerDiscreteScheduler with SD3's shift 3."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline(
        transformer=denoiser or sd3_transformer(), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae(),
        text_encoder=text_encoder(seed=1, projection=True), tokenizer=tokenizer(folder / "vocab"),
        text_encoder_2=text_encoder(seed=2, projection=True), tokenizer_2=tokenizer(folder / "vocab_2"),
        text_encoder_3=t5_encoder(d_model=32, seed=3), tokenizer_3=t5_tokenizer())
    return _saved(pipe, folder)


def _saved(pipe, folder: Path):
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(str(folder))
    return pipe


def prompts_file(folder: Path, prompts: list[str] = PROMPTS) -> Path:
    path = folder / "prompts.txt"
    path.write_text("# test prompts\n" + "\n".join(prompts) + "\n")
    return path
