"""`distdqn push`: an exported folder (distdqn.tools.export) uploaded to a Hugging Face Hub model
repository with `huggingface_hub` (the `hub` extra), which is created if missing. The token is
huggingface_hub's: `--token`, else HF_TOKEN, else the one `hf auth login` saved."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from distdqn.config import short_repr
from distdqn.errors import UserError


def check_repo_id(repo_id: str) -> None:
    """Refuse, before anything is exported or sent, a missing huggingface_hub or a repo id the
    Hub would refuse (`NAME` or `NAMESPACE/NAME`, as huggingface_hub's validate_repo_id says)."""
    if importlib.util.find_spec("huggingface_hub") is None:
        raise UserError("push needs the huggingface_hub package: pip install 'distdqn[hub]'")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        reason = str(error).splitlines()[0].split(":")[0]
        raise UserError(f"--repo {short_repr(repo_id)} is no Hub repo id: {reason}") from None


def push_folder(folder: Path, repo_id: str, private: bool, token: str | None, message: str) -> str:
    """Create the model repository `repo_id` if it is missing (`private` applies then only) and
    upload `folder` to it in one commit; return the commit's URL. A refusal or failure of the Hub
    (credentials, permissions, network) is one line naming the repo."""
    check_repo_id(repo_id)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message, repo_type="model")
    except Exception as error:
        if not _from_the_hub(error):
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(f"cannot push to {repo_id}: {type(error).__name__}: {reason}") from None
    return str(commit.commit_url)


def _from_the_hub(error: Exception) -> bool:
    """Whether `error` is the Hub's refusal (credentials, permissions, quota) or a failure of the
    HTTP client huggingface_hub reaches it with (httpx, httpx2 or requests, by release), which
    the user can act on; anything else is a bug and keeps its traceback."""
    from huggingface_hub.errors import HfHubHTTPError

    client = type(error).__module__.partition(".")[0]
    return isinstance(error, (HfHubHTTPError, OSError)) or client in ("httpx", "httpx2", "requests", "urllib3")
