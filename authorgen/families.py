"""Public pretrained models in Hugging Face's format, read into authorgen's own transformer.

A folder holds `config.json`, the weights (`model.safetensors`, or shards listed in
`model.safetensors.index.json`) and `tokenizer.json`. Each family supported is authorgen's
transformer with a `Variant` (`models/transformer.py`), and its weights are mapped by name:

- Llama (`llama`, as SmolLM2): RMSNorm, a SwiGLU MLP, grouped-query attention, no biases.
- GPT-NeoX (`gpt_neox`, as Pythia): rotary angles on part of each head, a parallel residual,
  biases, LayerNorm with a bias, an output layer of its own.
- GPT-2 (`gpt2`): learned positions, LayerNorm with a bias, biases, GELU's tanh approximation,
  and weights stored as Conv1D (input by output: transposed here).

Anything else, or an option of a family that the model does not have (RoPE scaling, a head
size other than width / heads, biases on some layers only), is refused in one line naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from authorgen import checkpoint
from authorgen.config import ModelConfig
from authorgen.errors import DataError, UsageError

FAMILIES = ("llama", "gpt_neox", "gpt2")
# GPT-2's config names its shapes its own way
GPT2_NAMES = {
    "hidden_size": "n_embd",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
    "max_position_embeddings": "n_positions",
    "intermediate_size": "n_inner",
}


def read_hf_config(folder: Path) -> dict:
    """The `config.json` of a Hugging Face model folder.

    Raises:
        DataError: when it is missing or damaged.
    """
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is missing or damaged ({exc}); is it a model folder?") from None
    return config


def _rope(hf: dict) -> tuple[float, float]:
    """The rotary base and the share of each head rotated, from old or new key names."""
    rope = hf.get("rope_parameters") or {}
    for given in (rope, hf.get("rope_scaling") or {}):  # new and old key names
        kind = given.get("rope_type", given.get("type", "default"))
        if kind not in (None, "default"):
            raise UsageError(f"RoPE scaling {kind!r} is not supported yet")
    theta = rope.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10_000.0)))
    fraction = rope.get("partial_rotary_factor", hf.get("rotary_pct", 1.0))
    return float(theta), float(fraction)


def model_config(hf: dict, context: int | None = None) -> ModelConfig:
    """The authorgen transformer that the Hugging Face `hf` config describes; its context is the
    model's, capped by `context`.

    Raises:
        DataError: when a size is missing.
        UsageError: naming the architecture or option that is not supported.
    """
    family = hf.get("model_type")
    if family not in FAMILIES:
        raise UsageError(
            f"architecture {family!r} is not supported; supported: {', '.join(FAMILIES)}"
        )
    if family == "gpt2":
        hf = {ours: hf.get(theirs) for ours, theirs in GPT2_NAMES.items()} | hf
        hf["intermediate_size"] = hf["intermediate_size"] or 4 * (hf["hidden_size"] or 0)
    sizes = ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size")
    for key in (*sizes, "intermediate_size"):
        if not isinstance(hf.get(key), int) or hf[key] < 1:
            raise DataError(f"config.json has no valid {key} ({hf.get(key)!r}); is it damaged?")
    width, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim", width // heads) != width // heads:
        raise UsageError(f"head size other than width / heads ({hf['head_dim']}) unsupported")
    theta, fraction = _rope(hf)
    if family == "llama":
        if hf.get("hidden_act", "silu") != "silu" or hf.get("attention_bias") or hf.get("mlp_bias"):
            raise UsageError("a Llama with biases or another activation than SiLU is not supported")
        variant = {
            "kv_heads": hf.get("num_key_value_heads") or heads,
            "norm": "rms",
            "norm_eps": hf.get("rms_norm_eps", 1e-6),
            "mlp": "swiglu",
            "tied": bool(hf.get("tie_word_embeddings", False)),
        }
    elif family == "gpt2":
        activation = hf.get("activation_function", "gelu_new")
        if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise UsageError(f"a GPT-2 with activation {activation!r} is not supported")
        if not hf.get("scale_attn_weights", True) or hf.get("scale_attn_by_inverse_layer_idx"):
            raise UsageError("a GPT-2 with attention scaled other than by 1/sqrt(head size)")
        variant = {
            "norm_bias": True,
            "norm_eps": hf.get("layer_norm_epsilon", 1e-5),
            "bias": True,
            "mlp": "gelu" if activation == "gelu" else "gelu_tanh",
            "tied": bool(hf.get("tie_word_embeddings", True)),
            "positions": "learned",
        }
    else:
        if hf.get("hidden_act", "gelu") != "gelu" or hf.get("attention_bias", True) is False:
            raise UsageError("a GPT-NeoX without biases or with another activation than GELU")
        variant = {
            "norm_bias": True,
            "norm_eps": hf.get("layer_norm_eps", 1e-5),
            "bias": True,
            "parallel": bool(hf.get("use_parallel_residual", True)),
            "tied": bool(hf.get("tie_word_embeddings", False)),
        }
    if family != "gpt2":
        variant.update(rotary_fraction=fraction, rope_theta=theta)
    longest = hf.get("max_position_embeddings") or 2048
    return ModelConfig(
        model="transformer",
        vocab_size=hf["vocab_size"],
        embedding_dim=width,
        layers=hf["num_hidden_layers"],
        heads=heads,
        mlp_dim=hf["intermediate_size"],
        context=min(longest, context) if context else longest,
        variant=variant,
    )


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors files (one, or the shards of an index), as
    copies (no file stays mapped).

    Raises:
        DataError: when there are none, or they cannot be read.
    """
    from safetensors import SafetensorError

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    try:
        if index.is_file():
            shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(shards.values()))
        else:
            files = ["model.safetensors"]
        tensors = {}
        for name in files:
            tensors.update(checkpoint.read_weights(folder / name))
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise DataError(
            f"{folder} has no readable weights ({exc}); it needs model.safetensors "
            "(PyTorch .bin files are not read: they can run code)"
        ) from None
    return tensors


def map_weights(hf: dict, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Hugging Face `tensors` of a model of config `hf` under authorgen's names.

    Raises:
        DataError: when one is missing.
    """
    family = hf["model_type"]
    layers = hf.get("n_layer") if family == "gpt2" else hf["num_hidden_layers"]
    try:
        if family == "llama":
            mapped = _llama(tensors, layers)
        elif family == "gpt2":
            mapped = _gpt2(tensors, layers)
        else:
            mapped = _neox(tensors, layers, hf["num_attention_heads"])
    except KeyError as exc:
        raise DataError(f"the weights lack {exc.args[0]}; the folder is incomplete") from None
    if hf.get("tie_word_embeddings", family == "gpt2"):
        mapped.pop("head.weight", None)  # some folders keep a copy of the embedding
    return mapped


def _llama(t: dict, layers: int) -> dict:
    out = {"embedding.weight": t["model.embed_tokens.weight"]}
    out["norm.weight"] = t["model.norm.weight"]
    if "lm_head.weight" in t:
        out["head.weight"] = t["lm_head.weight"]
    for i in range(layers):
        hf, us = f"model.layers.{i}.", f"blocks.{i}."
        attention = hf + "self_attn."
        out[us + "attention.qkv.weight"] = torch.cat(
            [t[f"{attention}{x}_proj.weight"] for x in "qkv"]
        )
        out[us + "attention.out.weight"] = t[attention + "o_proj.weight"]
        for ours, theirs in (("fc", "up"), ("gate", "gate"), ("proj", "down")):
            out[f"{us}mlp.{ours}.weight"] = t[f"{hf}mlp.{theirs}_proj.weight"]
        out[us + "norm1.weight"] = t[hf + "input_layernorm.weight"]
        out[us + "norm2.weight"] = t[hf + "post_attention_layernorm.weight"]
    return out


def _gpt2(t: dict, layers: int) -> dict:
    # saved by GPT2LMHeadModel under "transformer.", by GPT2Model (OpenAI's upload) without
    t = {k.removeprefix("transformer."): v for k, v in t.items()}
    out = {"embedding.weight": t["wte.weight"], "positions.weight": t["wpe.weight"]}
    if "lm_head.weight" in t:
        out["head.weight"] = t["lm_head.weight"]
    names = {
        "norm1": "ln_1",
        "norm2": "ln_2",
        "attention.qkv": "attn.c_attn",
        "attention.out": "attn.c_proj",
        "mlp.fc": "mlp.c_fc",
        "mlp.proj": "mlp.c_proj",
    }
    for i in range(layers):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                tensor = t[f"h.{i}.{theirs}.{kind}"]
                # Conv1D keeps (inputs, outputs): nn.Linear's transpose
                conv = kind == "weight" and not ours.startswith("norm")
                out[f"blocks.{i}.{ours}.{kind}"] = tensor.t().contiguous() if conv else tensor
    for kind in ("weight", "bias"):
        out[f"norm.{kind}"] = t[f"ln_f.{kind}"]
    return out


def _neox(t: dict, layers: int, heads: int) -> dict:
    out = {"embedding.weight": t["gpt_neox.embed_in.weight"]}
    if "embed_out.weight" in t:
        out["head.weight"] = t["embed_out.weight"]
    names = {
        "norm1": "input_layernorm",
        "norm2": "post_attention_layernorm",
        "attention.out": "attention.dense",
        "mlp.fc": "mlp.dense_h_to_4h",
        "mlp.proj": "mlp.dense_4h_to_h",
    }
    for i in range(layers):
        hf, us = f"gpt_neox.layers.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            for ours, theirs in names.items():
                out[f"{us}{ours}.{kind}"] = t[f"{hf}{theirs}.{kind}"]
            # NeoX keeps each head's query, key and value together: (H, 3, D) -> (3, H, D)
            fused = t[f"{hf}attention.query_key_value.{kind}"]
            grouped = fused.view(heads, 3, -1, *fused.shape[1:]).transpose(0, 1)
            out[f"{us}attention.qkv.{kind}"] = grouped.reshape(fused.shape)
    for kind in ("weight", "bias"):
        out[f"norm.{kind}"] = t[f"gpt_neox.final_layer_norm.{kind}"]
    return out


def load_pretrained(folder: Path, context: int | None = None):
    """The model of a Hugging Face folder as an authorgen transformer, and its config.

    Raises:
        DataError: when a file is missing or damaged, or the weights do not fit.
        UsageError: when the architecture or one of its options is not supported.
    """
    from authorgen.models import build_model

    hf = read_hf_config(folder)
    config = model_config(hf, context)
    weights = map_weights(hf, read_hf_weights(folder))
    try:
        return build_model(config, weights), config
    except RuntimeError as exc:
        raise DataError(f"the weights in {folder} do not fit its config.json ({exc})") from None


def is_hf_folder(path: Path) -> bool:
    """Whether `path` is a Hugging Face model folder (a config.json with a model_type)."""
    try:
        return "model_type" in read_hf_config(path)
    except DataError:
        return False
