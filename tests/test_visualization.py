import torch
import visualize  # scripts/visualize.py

from hf_vit_mnist.visualization import (
    attention_rollout,
    mean_attention_distance,
    patch_filter_components,
    position_similarity,
)


def test_identical_position_embeddings_are_fully_similar():
    same = torch.ones(1, 1 + 9, 4)
    assert torch.allclose(position_similarity(same), torch.ones(3, 3, 3, 3))


def test_position_similarity_is_one_on_the_diagonal_and_symmetric():
    similarity = position_similarity(torch.randn(1, 1 + 16, 8)).reshape(16, 16)
    assert torch.allclose(similarity.diagonal(), torch.ones(16), atol=1e-6)
    assert torch.allclose(similarity, similarity.T, atol=1e-6)
    orthogonal = torch.eye(4)  # 4 positions with orthogonal embeddings: similar only to themselves
    assert torch.allclose(position_similarity(orthogonal).reshape(4, 4), torch.eye(4))


def test_rollout_of_identity_attention_is_identity():
    identity = torch.eye(5).expand(2, 3, 5, 5)  # (B, H, T, T)
    assert torch.allclose(attention_rollout([identity, identity, identity]), torch.eye(5).expand(2, 5, 5))


def test_rollout_of_one_layer_mixes_in_the_residual():
    uniform = torch.full((1, 2, 4, 4), 0.25)
    expected = 0.5 * torch.full((4, 4), 0.25) + 0.5 * torch.eye(4)
    assert torch.allclose(attention_rollout([uniform])[0], expected)
    rows = attention_rollout([uniform, torch.softmax(torch.randn(1, 2, 4, 4), -1)])[0].sum(-1)
    assert torch.allclose(rows, torch.ones(4))


def test_mean_attention_distance_hand_made_cases():
    tokens = 1 + 4  # [CLS] + a 2x2 grid of patches
    self_only = torch.eye(tokens).expand(1, 2, tokens, tokens)
    assert torch.allclose(mean_attention_distance([self_only], patch_size=3), torch.zeros(1, 2))
    # Every patch attends only to the patch diagonally opposite it: distance sqrt(2) patches of 3 pixels.
    opposite = torch.zeros(1, 1, tokens, tokens)
    for query, key in [(1, 4), (2, 3), (3, 2), (4, 1)]:
        opposite[0, 0, query, key] = 1.0
    opposite[0, 0, 0, 0] = 1.0
    assert torch.allclose(mean_attention_distance([opposite], patch_size=3), torch.tensor([[3 * 2**0.5]]))


def test_patch_filter_components_are_orthonormal_and_ordered():
    torch.manual_seed(0)
    weight = torch.randn(64, 1, 4, 4)
    weight[:, 0, 0, 0] *= 20  # the top-left pixel varies most across filters
    components = patch_filter_components(weight, count=28)
    assert components.shape == (16, 1, 4, 4)  # at most C * P * P components
    flat = components.reshape(16, -1)
    assert torch.allclose(flat @ flat.T, torch.eye(16), atol=1e-5)
    assert flat[0].abs().argmax() == 0 and flat[0].abs().max() > 0.99  # the first component is that pixel


def test_visualize_writes_the_four_figures(trained, tmp_path):
    output_dir, _ = trained
    paths = visualize.main([str(output_dir / "final_model"), "--output_dir", str(tmp_path), "--num_digits", "2",
                            "--num_distance_images", "20"])
    assert [path.name for path in paths] == ["patch_embedding_filters.png", "position_embedding_similarity.png",
                                             "cls_attention.png", "mean_attention_distance.png"]
    assert all(path.stat().st_size > 5000 for path in paths)
