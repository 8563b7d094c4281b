"""The state-dict keys and shapes of fairseq's ``Wav2Vec2Model`` (facebookresearch/fairseq,
``fairseq/models/wav2vec/wav2vec2.py``, MIT), written from its ``__init__`` for the parity tests of ``to_fairseq``:
fairseq is not installed here, and its checkpoints are pickles.

What fairseq builds, in its names:

- ``feature_extractor.conv_layers.{i}``: ``Sequential(conv, Dropout, norm, GELU)``: the conv at ``.0`` (bias when
  ``conv_bias``); ``extractor_mode="default"``: ``Fp32GroupNorm(dim, dim)`` at ``.2`` of the first layer only
  (the other layers are ``Sequential(conv, Dropout, GELU)``); ``"layer_norm"``: ``Sequential(TransposeLast,
  Fp32LayerNorm, TransposeLast)`` at ``.2`` of every layer, so its weights are ``.2.1``;
- ``post_extract_proj`` only when the last conv width differs from ``encoder_embed_dim``;
- ``quantizer`` (``GumbelVectorQuantizer``, ``combine_groups=False``): ``vars`` ``(1, G * V, vq_dim / G)`` and a
  ``weight_proj`` Linear (``weight_proj_depth=1``); ``project_q`` Linear(vq_dim, final_dim);
- ``mask_emb`` (always), ``layer_norm`` on the CNN features, ``final_proj`` Linear(embed, final_dim);
- ``encoder.pos_conv.0``: the conv under ``torch.nn.utils.weight_norm(dim=2)``: ``weight_g`` (1, 1, K),
  ``weight_v``, ``bias``; ``encoder.layer_norm``; ``encoder.layers.{i}``: ``self_attn.{k,v,q,out}_proj``,
  ``self_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``.
"""


def fairseq_wav2vec2_shapes(conv_layers, extractor_mode, conv_bias, embed_dim, layers, ffn_dim, conv_pos,
                            conv_pos_groups, latent_vars, latent_groups, final_dim, latent_dim=0):  # fmt: skip
    """``{key: shape}`` of fairseq's ``Wav2Vec2Model(cfg)`` with ``quantize_targets=True``, ``quantize_input=False``,
    ``target_glu=False`` (the pretraining configs); ``conv_layers`` is fairseq's ``[(dim, kernel, stride), ...]``,
    ``extractor_mode`` ``"default"`` or ``"layer_norm"``."""
    shapes = {}

    def linear(name, d_in, d_out):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (d_out, d_in), (d_out,)

    def norm(name, dim):
        shapes[f"{name}.weight"] = shapes[f"{name}.bias"] = (dim,)

    c_in = 1
    for i, (dim, k, _) in enumerate(conv_layers):
        layer = f"feature_extractor.conv_layers.{i}"
        shapes[f"{layer}.0.weight"] = (dim, c_in, k)
        if conv_bias:
            shapes[f"{layer}.0.bias"] = (dim,)
        if extractor_mode == "layer_norm":
            norm(f"{layer}.2.1", dim)
        elif i == 0:
            norm(f"{layer}.2", dim)
        c_in = dim
    embed = conv_layers[-1][0]
    if embed != embed_dim:
        linear("post_extract_proj", embed, embed_dim)
    vq_dim = latent_dim if latent_dim > 0 else final_dim
    shapes["quantizer.vars"] = (1, latent_groups * latent_vars, vq_dim // latent_groups)
    linear("quantizer.weight_proj", embed, latent_groups * latent_vars)
    linear("project_q", vq_dim, final_dim)
    shapes["mask_emb"] = (embed_dim,)
    shapes["encoder.pos_conv.0.bias"] = (embed_dim,)
    shapes["encoder.pos_conv.0.weight_g"] = (1, 1, conv_pos)
    shapes["encoder.pos_conv.0.weight_v"] = (embed_dim, embed_dim // conv_pos_groups, conv_pos)
    for i in range(layers):
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            linear(f"encoder.layers.{i}.self_attn.{proj}", embed_dim, embed_dim)
        norm(f"encoder.layers.{i}.self_attn_layer_norm", embed_dim)
        linear(f"encoder.layers.{i}.fc1", embed_dim, ffn_dim)
        linear(f"encoder.layers.{i}.fc2", ffn_dim, embed_dim)
        norm(f"encoder.layers.{i}.final_layer_norm", embed_dim)
    norm("encoder.layer_norm", embed_dim)
    norm("layer_norm", embed)
    linear("final_proj", embed_dim, final_dim)
    return shapes
