"""Can a Hub repository be reached? One place for the messages that tell the user the fix."""

from __future__ import annotations

import os

# Snakemake's --configfile takes several files: the target goes before it.
DEMO_HINT = ("to try the workflow without a GPU or the Hub, run the offline demo: "
             "snakemake --cores 2 all --configfile config/demo.yaml")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def problem(repo: str, revision: str | None, repo_type: str, key: str, local_fix: str) -> str | None:
    """None when `repo` at `revision` can be read, else a message naming `key` and the fix;
    `local_fix` says how to use a local copy instead (e.g. "set models.x.path to a local folder").

    Online, asks the Hub for the repository's metadata (nothing is downloaded). With
    HF_HUB_OFFLINE=1, looks for a complete snapshot in the local cache instead."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub import errors

    kind = "data set" if repo_type == "dataset" else "model"
    if offline():
        try:
            snapshot_download(repo, revision=revision, repo_type=repo_type, local_files_only=True)
            return None
        except Exception:  # noqa: BLE001 - any failure means: not in the cache
            return (f"{key}: {kind} {repo} is not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 "
                    f"forbids downloading it. Fix: hf download {repo}{' --repo-type dataset' if repo_type == 'dataset' else ''} "
                    f"on a machine with network access, unset HF_HUB_OFFLINE, or {local_fix}")
    api = HfApi()
    try:
        info = api.dataset_info if repo_type == "dataset" else api.model_info
        info(repo, revision=revision, timeout=15)
        return None
    except errors.GatedRepoError:
        return (f"{key}: {kind} {repo} is gated and this account has no access. Fix: accept its terms on "
                f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo}, then log in "
                f"(hf auth login) or set HF_TOKEN; or {local_fix}")
    except errors.RepositoryNotFoundError:
        return (f"{key}: {kind} {repo} does not exist on the Hub (or is private and you are not logged in). "
                f"Fix: correct the id, log in (hf auth login / HF_TOKEN), or {local_fix}")
    except errors.RevisionNotFoundError:
        return f"{key}: {kind} {repo} has no revision {revision!r}. Fix: set the revision to an existing branch, tag or commit"
    except Exception as error:  # noqa: BLE001 - network failures come in many types
        return (f"{key}: cannot reach {kind} {repo} on the Hugging Face Hub ({type(error).__name__}). "
                f"Fix: check the network, {local_fix}, or set HF_HUB_OFFLINE=1 to use the local cache")
