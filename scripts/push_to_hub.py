"""Push a trained model folder to the Hugging Face Hub with its model card, or write exactly the folder that would be
pushed to a local directory (no network).

    python scripts/push_to_hub.py runs/quick/final_model --hub_model_id you/vit-mnist
    python scripts/push_to_hub.py runs/quick/final_model --hub_model_id you/vit-mnist --private
    python scripts/push_to_hub.py runs/quick/final_model --local_dir exported/vit-mnist

The token comes from the usual places (`--token`, the HF_TOKEN variable, `hf auth login`). A README.md on the Hub
that someone edited after it was generated is kept (pass --overwrite_card to replace it).
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for model_card/
from model_card.build import build_model_card, card_text_with_mark, is_unedited_generated_card  # noqa: E402

HUB_FILES = ("model.safetensors", "config.json", "preprocessor_config.json", "configuration_vit_mnist.py",
             "modeling_vit_mnist.py", "image_processing_vit_mnist.py", "all_results.json", "training_summary.json",
             "seeds.json")


def prepare_hub_folder(model_dir: str | Path, out_dir: str | Path, repo_id: str | None = None) -> Path:
    """Copies what the Hub receives (weights, configs, code, results, figures) and writes the model card."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    missing = [name for name in HUB_FILES[:6] if not (model_dir / name).exists()]
    if missing:
        raise SystemExit(f"{model_dir} is not a complete trained model folder: {', '.join(missing)} missing. "
                         "Point at the final_model/ folder that scripts/train.py writes.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in [*(model_dir / name for name in HUB_FILES), *model_dir.glob("*.png")]:
        if path.exists():
            shutil.copy2(path, out_dir / path.name)
    if (model_dir / "eval" / "eval_results.json").exists():
        (out_dir / "eval").mkdir(exist_ok=True)
        shutil.copy2(model_dir / "eval" / "eval_results.json", out_dir / "eval" / "eval_results.json")
    (out_dir / "README.md").write_text(card_text_with_mark(build_model_card(out_dir, repo_id=repo_id)))
    return out_dir


def push(model_dir: str | Path, repo_id: str, private: bool | None = None, token: str | None = None,
         overwrite_card: bool = False) -> str:
    """Creates the repo if needed and uploads the folder in one commit. Returns the commit URL."""
    from huggingface_hub import create_repo, hf_hub_download, upload_folder
    from huggingface_hub.errors import EntryNotFoundError

    with tempfile.TemporaryDirectory() as staging:
        prepare_hub_folder(model_dir, staging, repo_id=repo_id)
        try:
            repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
            keep_remote_card = False
            try:
                remote_card = Path(hf_hub_download(repo_id, "README.md", token=token)).read_text()
                keep_remote_card = not overwrite_card and not is_unedited_generated_card(remote_card)
            except EntryNotFoundError:
                pass
            if keep_remote_card:
                print(f"Keeping the README.md on {repo_id}: it was edited after it was generated "
                      "(--overwrite_card replaces it).")
            commit = upload_folder(repo_id=repo_id, folder_path=staging, token=token,
                                   ignore_patterns=["README.md"] if keep_remote_card else None,
                                   commit_message="Upload ViT-MNIST (hf-vit-mnist)")
        except Exception as error:  # no network, bad token, no rights: one line, and say where the model is
            raise SystemExit(
                f"Could not push to the Hub ({type(error).__name__}: {error}). Nothing is lost: the model is in "
                f"{model_dir}. Write the Hub folder locally with `python scripts/push_to_hub.py {model_dir} "
                f"--local_dir DIR`, or push again later."
            ) from None
    return str(commit)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="A trained model folder (final_model/ of scripts/train.py).")
    parser.add_argument("--hub_model_id", help="The Hub repo, e.g. you/vit-mnist.")
    parser.add_argument("--private", action="store_true", default=None, help="Create the repo as private.")
    parser.add_argument("--token", help="A Hub token (default: HF_TOKEN or the saved login).")
    parser.add_argument("--local_dir", help="Write the folder that would be pushed here instead; no network.")
    parser.add_argument("--overwrite_card", action="store_true", help="Replace a README.md edited on the Hub.")
    args = parser.parse_args(argv)
    if args.local_dir:
        print(prepare_hub_folder(args.model_dir, args.local_dir, repo_id=args.hub_model_id))
    elif args.hub_model_id:
        print(push(args.model_dir, args.hub_model_id, private=args.private, token=args.token,
                   overwrite_card=args.overwrite_card))
    else:
        parser.error("give --hub_model_id (push) or --local_dir (write the folder locally)")


if __name__ == "__main__":
    main()
