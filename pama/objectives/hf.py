"""``hf:<model id or path>[:label][:k=v,...]``: a Hugging Face sequence-classification model as an objective."""
from __future__ import annotations

import os
import re
import socket
from typing import Any
from urllib.parse import urlparse

import numpy as np

from .spec import Objective, ObjectiveError, _bounds, _check_unknown, _lock, _num



_HF_INPUTS = ("concat", "pair", "response", "hh")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub host resolves and accepts a connection (a cheap pre-check)."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _in_hf_cache(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache  # optional: comes with transformers

        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except Exception:
        return False


class _HFModel:
    def __init__(self, model_id: str, device: str | None, spec: str = "") -> None:
        import torch  # heavy: only for hf: objectives
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.model_id = model_id
        local = os.path.isdir(os.path.expanduser(model_id))
        path = os.path.expanduser(model_id) if local else model_id
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        cached = local or _in_hf_cache(model_id)
        last: Exception | None = None
        if not cached and (offline or not _hub_reachable()):
            last = OSError("not a local folder, not in the Hugging Face cache, and the hub is not reachable"
                           + (" (HF_HUB_OFFLINE is set)" if offline else ""))
        else:
            try:
                self.model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=cached)
                self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=cached)
            except Exception as e:  # OSError, ValueError, HF hub errors...
                last = e
        if last is not None:
            raise ObjectiveError(
                f"objective {spec or 'hf:' + model_id!r}: cannot load the sequence-classification model {model_id!r} "
                f"({type(last).__name__}: {str(last).splitlines()[0] if str(last) else ''}). Check the spelling; "
                "offline, download it first on a machine with network (`huggingface-cli download "
                f"{model_id}`) into the HF cache, or save it to a folder and use hf:/path/to/folder[:label]."
            ) from last
        self.model.eval()
        if device:
            self.model.to(device)
        self.device = next(self.model.parameters()).device
        tok = self.tokenizer
        if tok.pad_token is None:  # GPT-2 style reward models have no pad token
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
        if getattr(self.model.config, "pad_token_id", None) is None and tok.pad_token_id is not None:
            self.model.config.pad_token_id = tok.pad_token_id
        max_len = getattr(tok, "model_max_length", None) or 512
        cfg_max = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None
        )
        self.max_length = int(min(max_len if max_len < 10**6 else 512, cfg_max or 512, 1024))
        self.num_labels = int(self.model.config.num_labels)
        self.id2label = {int(k): str(v) for k, v in (self.model.config.id2label or {}).items()}

    def resolve_label(self, label: Any, spec: str) -> int:
        if label is None or label == "":
            if self.num_labels == 1:
                return 0
            raise ObjectiveError(
                f"objective {spec!r}: the model has {self.num_labels} labels; pick one as hf:<model>:<label> "
                f"(by name or index): {self._labels_text()}"
            )
        text = str(label).strip()
        if re.fullmatch(r"-?\d+", text):
            idx = int(text)
            if not -self.num_labels <= idx < self.num_labels:
                raise ObjectiveError(f"objective {spec!r}: label index {idx} out of range; {self._labels_text()}")
            return idx % self.num_labels
        for idx, name in self.id2label.items():
            if name == text:
                return idx
        for idx, name in self.id2label.items():
            if name.lower() == text.lower():
                return idx
        raise ObjectiveError(f"objective {spec!r}: unknown label {text!r}; {self._labels_text()}")

    def _labels_text(self) -> str:
        names = ", ".join(f"{i}={self.id2label.get(i, f'LABEL_{i}')}" for i in range(self.num_labels))
        return f"labels: {names}"

    def logits(self, prompts: list[str], responses: list[str], mode: str, batch_size: int) -> np.ndarray:
        torch = self.torch
        tok = self.tokenizer
        out = []
        with torch.inference_mode():
            for i in range(0, len(responses), batch_size):
                p, r = prompts[i : i + batch_size], responses[i : i + batch_size]
                kwargs = dict(padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                old_side = tok.truncation_side
                try:
                    if mode == "pair":
                        enc = tok(p, r, **{**kwargs, "truncation": "only_first"}) if any(p) else tok(r, **kwargs)
                    else:
                        if mode == "concat":
                            texts = [(a.rstrip() + "\n" + b.strip()) if a.strip() else b.strip() for a, b in zip(p, r)]
                        elif mode == "hh":
                            texts = [f"\n\nHuman: {a.strip()}\n\nAssistant: {b.strip()}" for a, b in zip(p, r)]
                        else:
                            texts = [b.strip() for b in r]
                        # keep the end of the text (the response) when it is too long
                        tok.truncation_side = "left" if mode != "response" else "right"
                        enc = tok(texts, **kwargs)
                except Exception:
                    # the pair fails when the prompt alone exceeds max_length: fall back to left-truncated concat
                    tok.truncation_side = "left"
                    texts = [(a.rstrip() + "\n" + b.strip()) if a.strip() else b.strip() for a, b in zip(p, r)]
                    enc = tok(texts, **kwargs)
                finally:
                    tok.truncation_side = old_side
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                out.append(self.model(**enc).logits.float().cpu().numpy())
        return np.concatenate(out, axis=0)


_hf_cache: dict[tuple[str, str | None], _HFModel] = {}


def _hf_model(model_id: str, device: str | None, spec: str = "") -> _HFModel:
    key = (model_id, device)
    with _lock:
        if key not in _hf_cache:
            _hf_cache[key] = _HFModel(model_id, device, spec)
        return _hf_cache[key]


def _make_hf(spec: str, parts: list[str], params: dict[str, Any]) -> Objective:
    _check_unknown(params, ["label", "input", "batch_size", "device"], spec)
    if not parts or not parts[0]:
        raise ObjectiveError(f"objective {spec!r}: expected hf:<model id or path>[:<label>][:key=value,...]")
    if len(parts) > 2:
        # a path with a colon (e.g. C:\\...) → everything but the last segment is the model
        parts = [":".join(parts[:-1]), parts[-1]]
    model_id = parts[0]
    label = parts[1] if len(parts) > 1 else params.pop("label", None)
    params.pop("label", None)
    mode = str(params.pop("input", "concat"))
    if mode not in _HF_INPUTS:
        raise ObjectiveError(f"objective {spec!r}: input must be one of {', '.join(_HF_INPUTS)}, got {mode!r}")
    batch_size = int(_num(params.pop("batch_size", 16), "batch_size", spec))
    device = params.pop("device", None)
    lo, hi = _bounds(params, -5.0, 5.0, spec)
    hf = _hf_model(model_id, None if device is None else str(device), spec)
    idx = hf.resolve_label(label, spec)
    label_name = hf.id2label.get(idx, str(idx)) if hf.num_labels > 1 else "reward"

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return hf.logits(prompts, responses, mode, batch_size)[:, idx].tolist()

    what = f"logit of label {label_name}" if hf.num_labels > 1 else "reward-model output"
    return Objective(
        spec, f"{what} from {model_id} (input: {mode})", lo, hi, score,
        params={"model": model_id, "label": idx, "input": mode},
    )


