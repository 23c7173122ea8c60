"""The Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words") for digits: the whole
forward pass, from pixels to class logits, in one file.

    pixels (B, C, H, W)
      -> patches: a Conv2d with kernel = stride = patch size cuts the image into N non-overlapping patches
         and projects each to a D-dim token                                           (B, N, D)
      -> prepend a learned [CLS] token, add learned position embeddings               (B, 1 + N, D)
      -> L pre-norm encoder layers: x + Attention(LN(x)), then x + MLP(LN(x))         (B, 1 + N, D)
      -> final LayerNorm, pool ([CLS] token, or mean of patch tokens)                  (B, D)
      -> linear classifier                                                             (B, num_labels)
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_vit_mnist import ViTMNISTConfig


class ViTMNISTPatchEmbeddings(nn.Module):
    """Cuts the image into non-overlapping patches and linearly projects each one to a token.

    A Conv2d whose kernel and stride both equal the patch size is exactly "flatten every patch and multiply it
    by one shared matrix" (the paper's E), done in one fused op.
    """

    def __init__(self, config: ViTMNISTConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = self.projection(pixel_values)  # (B, D, H/P, W/P)
        return patches.flatten(2).transpose(1, 2)  # (B, N, D), patches in row-major order


class ViTMNISTConvStem(nn.Module):
    """The paper's hybrid input (section 3.1): tokens are 1x1 patches of a CNN feature map instead of pixel
    patches. The CNN is the convolutional stem of Xiao et al. (2021, "Early Convolutions Help Transformers See
    Better"): one 3x3 stride-2 convolution with BatchNorm and ReLU per halving of the resolution, widths doubling
    up to D, then a 1x1 convolution (the paper's E). It gives the same N tokens as patch_size x patch_size patches.
    A config option (`stem="conv"`), measured against the plain ViT; the released model is the plain one.
    """

    def __init__(self, config: ViTMNISTConfig):
        super().__init__()
        num_halvings = config.patch_size.bit_length() - 1  # patch_size is a power of two (checked by the config)
        layers, channels = [], config.num_channels
        for i in range(num_halvings):
            width = config.hidden_size >> (num_halvings - 1 - i)  # ..., D/4, D/2, D
            layers += [nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.convolutions = nn.Sequential(*layers)
        self.projection = nn.Conv2d(channels, config.hidden_size, kernel_size=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.projection(self.convolutions(pixel_values))  # (B, D, H/P, W/P)
        return features.flatten(2).transpose(1, 2)  # (B, N, D)


class ViTMNISTEmbeddings(nn.Module):
    """Patch tokens, plus the learnable [CLS] token and the learned position embeddings.

    [CLS]: the paper follows BERT and prepends one extra learnable token. It carries no image content of its own;
    through attention it gathers what the classifier needs from all patches, and its final state is the image
    representation. Having one fixed slot for this keeps the head independent of the number of patches.

    Position embeddings: attention is permutation-invariant, so without them the model would see a bag of
    patches and could not tell a 6 from a 9. The paper found plain learned 1-D embeddings, one vector per
    position, as good as 2-D-aware ones: the 2-D grid structure is learned from data (see scripts/visualize.py).
    """

    def __init__(self, config: ViTMNISTConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.image_size = config.image_size
        self.num_channels = config.num_channels
        self.patch_embeddings = ViTMNISTConvStem(config) if config.stem == "conv" else ViTMNISTPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))  # (1, 1, D), one for all images
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, 1 + config.num_patches, config.hidden_size)  # (1, 1 + N, D): slot 0 is [CLS]'s
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def interpolate_pos_encoding(self, height: int, width: int) -> torch.Tensor:
        """Position embeddings for an image of another size: the learned (side x side) grid is resized
        bicubically to the new patch grid, as the paper does for fine-tuning at a higher resolution."""
        grid = self.image_size // self.patch_size
        new_height, new_width = height // self.patch_size, width // self.patch_size
        if (new_height, new_width) == (grid, grid):
            return self.position_embeddings
        cls_position, patch_positions = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        dim = patch_positions.shape[-1]
        patch_positions = patch_positions.reshape(1, grid, grid, dim).permute(0, 3, 1, 2)  # (1, D, grid, grid)
        patch_positions = nn.functional.interpolate(
            patch_positions, size=(new_height, new_width), mode="bicubic", align_corners=False
        )
        patch_positions = patch_positions.permute(0, 2, 3, 1).reshape(1, new_height * new_width, dim)
        return torch.cat((cls_position, patch_positions), dim=1)  # (1, 1 + N', D)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"pixel_values must have shape (batch, {self.num_channels}, height, width), got "
                f"{tuple(pixel_values.shape)}. Prepare images with ViTMNISTImageProcessor."
            )
        batch_size, _, height, width = pixel_values.shape
        if interpolate_pos_encoding:
            position_embeddings = self.interpolate_pos_encoding(height, width)
        elif height != self.image_size or width != self.image_size:
            raise ValueError(
                f"Input images are {height}x{width} but the model was built for {self.image_size}x{self.image_size}."
                " Resize them with ViTMNISTImageProcessor, or pass interpolate_pos_encoding=True."
            )
        else:
            position_embeddings = self.position_embeddings
        patch_tokens = self.patch_embeddings(pixel_values)  # (B, N, D)
        cls_tokens = self.cls_token.expand(batch_size, -1, -1)  # (B, 1, D), a view: no copy per image
        embeddings = torch.cat((cls_tokens, patch_tokens), dim=1)  # (B, 1 + N, D)
        embeddings = embeddings + position_embeddings  # broadcast over the batch
        return self.dropout(embeddings)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(d)) V written out; the only path that can return the attention weights."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, 1 + N, 1 + N)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)  # (B, H, 1 + N, head_dim)
    return attn_output.transpose(1, 2), attn_weights  # (B, 1 + N, H, head_dim)


class ViTMNISTAttention(nn.Module):
    """Multi-head self-attention over all tokens.

    Q, K and V have separate projections: one fused (D, 3D) projection saves two matmul calls but, on CPU, its
    backward gathers the three gradients into one tensor (`cat`, copies): ~11 ms, ~5% of a training step at batch 128
    (`python scripts/benchmark.py --profile` on the fused version, commit fce760f)."""

    def __init__(self, config: ViTMNISTConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False  # every token sees every token; SDPA would otherwise be told to mask the future
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, seq_len, _ = hidden_states.shape
        heads = (batch_size, seq_len, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(heads).transpose(1, 2)  # (B, H, 1 + N, head_dim)
        key = self.k_proj(hidden_states).view(heads).transpose(1, 2)
        value = self.v_proj(hidden_states).view(heads).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            None,  # no attention mask: every image has the same number of tokens
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch_size, seq_len, -1)  # (B, 1 + N, D), heads concatenated
        return self.o_proj(attn_output), attn_weights


class ViTMNISTMLP(nn.Module):
    """The position-wise feed-forward block: D -> intermediate_size -> D."""

    def __init__(self, config: ViTMNISTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class ViTMNISTLayer(GradientCheckpointingLayer):
    """One pre-norm encoder layer (the paper's Eq. 2-3): LayerNorm comes before each block, inside the residual."""

    def __init__(self, config: ViTMNISTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ViTMNISTAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ViTMNISTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        attn_output, _ = self.attention(self.layernorm_before(hidden_states), **kwargs)
        hidden_states = hidden_states + self.dropout(attn_output)
        mlp_output = self.mlp(self.layernorm_after(hidden_states))
        return hidden_states + self.dropout(mlp_output)  # (B, 1 + N, D)


class ViTMNISTPreTrainedModel(PreTrainedModel):
    config: ViTMNISTConfig
    config_class = ViTMNISTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTMNISTEmbeddings", "ViTMNISTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": ViTMNISTLayer, "attentions": ViTMNISTAttention}

    def _init_weights(self, module):
        super()._init_weights(module)  # normal(0, initializer_range) for Linear and Conv2d, ones/zeros for norms
        if isinstance(module, ViTMNISTEmbeddings):
            # Small truncated-normal starts (cut at two std; torch's default cut is at +-2 absolute, which at
            # std 0.02 cuts nothing): [CLS] and every position begin nearly equal, and their differences are learned.
            std = self.config.initializer_range
            init.trunc_normal_(module.cls_token, mean=0.0, std=std, a=-2 * std, b=2 * std)
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std, a=-2 * std, b=2 * std)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, use_safetensors: bool = True, **kwargs):
        """`PreTrainedModel.from_pretrained` that reads weights only from `model.safetensors` (never a pickle such
        as pytorch_model.bin) and says what to do when the weights are corrupt or do not fit the config."""
        if not use_safetensors:
            raise ValueError("ViTMNIST checkpoints load only from safetensors (no pickled weights); re-save the model "
                             "with save_pretrained, which writes model.safetensors.")
        return_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path, *args, use_safetensors=True, output_loading_info=True, **kwargs
            )
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            raise ValueError(
                f"The weights in {pretrained_model_name_or_path} do not fit the config (the report above lists the "
                "shapes). For another number of labels pass ignore_mismatched_sizes=True to train a new classifier "
                "head; otherwise config.json and model.safetensors come from different models."
            ) from None
        except Exception as error:
            if type(error).__name__ != "SafetensorError":  # safetensors' own class; this file imports only torch/HF
                raise
            raise OSError(f"model.safetensors in {pretrained_model_name_or_path} is corrupt or truncated ({error}): "
                          "download or save the checkpoint again.") from None
        if any(".attention.qkv." in key for key in loading_info["unexpected_keys"]):
            raise ValueError(
                f"{pretrained_model_name_or_path} was saved when Q, K and V shared one fused 'qkv' projection; this "
                "version has separate ones, so its attention weights would load as random. Convert the checkpoint "
                f"once with: python -m hf_vit_mnist.convert split-qkv {pretrained_model_name_or_path}"
            )
        return (model, loading_info) if return_loading_info else model


class ViTMNISTModel(ViTMNISTPreTrainedModel):
    """The encoder: pixels to token states (`last_hidden_state`) and one vector per image (`pooler_output`)."""

    def __init__(self, config: ViTMNISTConfig):
        super().__init__(config)
        self.embeddings = ViTMNISTEmbeddings(config)
        self.layers = nn.ModuleList([ViTMNISTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))
        for layer in self.layers:
            hidden_states = layer(hidden_states, **kwargs)
        hidden_states = self.layernorm(hidden_states)  # (B, 1 + N, D)
        if self.config.pooling == "cls":
            pooled = hidden_states[:, 0]  # (B, D): the [CLS] token's final state
        else:
            pooled = hidden_states[:, 1:].mean(dim=1)  # (B, D): average of the patch tokens
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states, pooler_output=pooled)


class ViTMNISTForImageClassification(ViTMNISTPreTrainedModel):
    """The encoder with a linear classifier on its pooled output; returns logits, and the loss given `labels`."""

    def __init__(self, config: ViTMNISTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = ViTMNISTModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """Everything up to the head (timm's split): token states and the pooled vector."""
        return self.vit(pixel_values, **kwargs)

    def forward_head(self, pooled_output: torch.Tensor) -> torch.Tensor:
        """The classifier: pooled vector (B, D) to logits (B, num_labels)."""
        return self.classifier(pooled_output)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        outputs = self.forward_features(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        logits = self.forward_head(outputs.pooler_output)
        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config, **kwargs)
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = ["ViTMNISTForImageClassification", "ViTMNISTModel", "ViTMNISTPreTrainedModel"]
