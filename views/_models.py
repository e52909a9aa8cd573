"""Which model a page shows: the shipped checkpoints and this session's upload, loaded once and only read.

Models live in ``st.cache_resource`` (shared by every user of the server) and are never modified:
quantization returns a new model. A shipped model is keyed by its file's identity (path, mtime, size), so a
checkpoint rewritten on disk is loaded afresh; an upload by the sha256 of its bytes.
"""

from __future__ import annotations

import streamlit as st

from fmq import zoo
from fmq.checkpoint import Checkpoint, CheckpointError
from views._settings import Settings, settings

UPLOADS = "uploads"  # session-state key: {sha256: (file name, bytes)}



def model_refs() -> dict[str, str]:
    """Every model a user can pick: {id: title}. Shipped ones first, then this session's uploads."""
    out = {r.name: r.title for r in zoo.shipped()}
    for sha, (name, _) in st.session_state.get(UPLOADS, {}).items():
        out[f"upload:{sha}"] = f"Uploaded: {name}"
    return out


@st.cache_resource(max_entries=8, show_spinner="Loading the FP32 model…")
def _shipped_model(path: str, mtime_ns: int, size: int) -> Checkpoint:
    return zoo.load(zoo.ModelRef("", "", path, mtime_ns, size))


@st.cache_resource(max_entries=4, show_spinner="Loading your model…")
def _uploaded_model(sha: str, _data: bytes, filename: str) -> Checkpoint:
    return zoo.load_upload(_data, filename)[0]


def shipped_model(ref: zoo.ModelRef) -> tuple[str, Checkpoint]:
    """(cache key, checkpoint) of a shipped model."""
    return f"{ref.path}:{ref.mtime_ns}:{ref.size}", _shipped_model(ref.path, ref.mtime_ns, ref.size)


def current_model(sett: Settings) -> tuple[str, Checkpoint, str]:
    """(cache key, checkpoint, shipped data set name) of the model picked in the sidebar.

    The name is "" for an upload whatever its metadata says: the shipped results and the paper's claims
    are about the shipped models, not about a file that calls itself "mnist".
    """
    if sett.model_id.startswith("upload:"):
        sha = sett.model_id.split(":", 1)[1]
        name, data = st.session_state[UPLOADS][sha]
        return sett.model_id, _uploaded_model(sha, data, name), ""
    ref = next(r for r in zoo.shipped() if r.name == sett.model_id)
    key, ck = shipped_model(ref)
    return key, ck, ref.name


def page_model() -> tuple[Settings, str, Checkpoint, str]:
    """(settings, cache key, checkpoint, data set) for a page; stops the page with a message if there is none."""
    sett = settings()
    try:
        key, ck, dataset = current_model(sett)
    except (CheckpointError, KeyError, StopIteration) as e:
        why = f" ({e})" if str(e) else ""
        st.warning(f"No model to show{why}. Put an fmq checkpoint in checkpoints/ (`python -m fmq train`) or "
                   "upload one under **Bring your own model** in the sidebar.", icon=":material/info:")
        st.stop()
    return sett, key, ck, dataset
