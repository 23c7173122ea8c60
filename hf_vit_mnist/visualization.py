"""What a trained ViT learned, as numbers (scripts/visualize.py draws them): the paper's Figure 7 and attention maps.

All functions take plain tensors, so they can be checked on small hand-made cases.
"""

import torch


def patch_filter_components(projection_weight: torch.Tensor, count: int = 28) -> torch.Tensor:
    """Principal components of the patch-embedding filters (the paper's Figure 7, left).

    projection_weight: the Conv2d weight (D, C, P, P): one P x P filter per embedding dimension. Returns the
    first `count` (at most C*P*P) principal directions of those D filters, each reshaped to (C, P, P), by
    decreasing explained variance.
    """
    dims, channels, height, width = projection_weight.shape
    filters = projection_weight.reshape(dims, -1).double()  # (D, C*P*P)
    centred = filters - filters.mean(0, keepdim=True)
    _, _, right = torch.linalg.svd(centred, full_matrices=False)  # rows: directions, by singular value
    count = min(count, right.shape[0])
    return right[:count].reshape(count, channels, height, width).float()


def position_similarity(position_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding with every other one (Figure 7, centre).

    position_embeddings: (1, 1 + N, D) with the [CLS] slot first, or (N, D). Returns (side, side, side, side):
    entry [r, c] is the (side x side) map of position (r, c)'s similarity to all positions.
    """
    patches = position_embeddings[0, 1:] if position_embeddings.ndim == 3 else position_embeddings
    side = round(patches.shape[0] ** 0.5)
    if side * side != patches.shape[0]:
        raise ValueError(f"{patches.shape[0]} patch positions do not form a square grid.")
    unit = torch.nn.functional.normalize(patches.double(), dim=-1)
    return (unit @ unit.T).reshape(side, side, side, side).float()


def attention_rollout(attentions: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each input token feeds each output token through all
    layers. Per layer, heads are averaged and the residual connection is added as identity (0.5 A + 0.5 I,
    rows renormalised); the layers' matrices are multiplied from the first to the last.

    attentions: one (B, H, T, T) tensor per layer. Returns (B, T, T); row 0 is what [CLS] finally draws on.
    """
    rollout = None
    for layer in attentions:
        mixed = 0.5 * layer.mean(1) + 0.5 * torch.eye(layer.shape[-1], dtype=layer.dtype)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def mean_attention_distance(attentions: tuple[torch.Tensor, ...] | list[torch.Tensor], patch_size: int
                            ) -> torch.Tensor:
    """Mean attention distance in pixels per layer and head (Figure 7, right): for each patch query, the distance
    to each attended patch weighted by the attention, averaged over queries and images. [CLS] is left out, and
    each query's weights over patches are renormalised.

    attentions: one (B, H, 1 + N, 1 + N) tensor per layer. Returns (layers, heads).
    """
    num_patches = attentions[0].shape[-1] - 1
    side = round(num_patches**0.5)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=-1).double() * patch_size  # (N, 2) in pixels
    distance = torch.cdist(centres, centres)  # (N, N)
    result = []
    for layer in attentions:
        weights = layer[:, :, 1:, 1:].double()  # (B, H, N, N): patch queries over patch keys
        weights = weights / weights.sum(-1, keepdim=True)
        result.append((weights * distance).sum(-1).mean(dim=(0, 2)))  # (H,)
    return torch.stack(result).float()
