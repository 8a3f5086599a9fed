"""The round report's flags and numbers in words: what a trainer reads instead of JSON keys.

A flag in the report is `{"reason": key, "detail": {...}}` (see `aggregator.outliers`). A report that already
carries a sentence for a flag (`message`, as readable reasons are added to it) is shown as written; otherwise the
sentence is built here from the detail's figures and the report's outlier settings. A reason this module does not
know yet still reads as words: its key spaced out, its figures named.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "REASON_TITLES",
    "address_short",
    "defense_words",
    "duration",
    "ether",
    "flag_sentence",
    "loss_words",
    "metric_title",
    "number",
    "percent",
    "reason_title",
    "timestamp",
]

WEI = 10**18

REASON_TITLES: dict[str, str] = {
    "invalid": "unusable update",
    "free_rider": "free rider",
    "sybil_cluster": "near-copy of other updates",
    "distance_outlier": "far from the others",
    "inconsistent_direction": "direction changed",
    "copied_update": "copied another trainer's update",
}
_METRIC_TITLES = {"accuracy": "Accuracy", "r2": "R²", "mse": "MSE"}
_LOSS_WORDS = {"cross_entropy": "cross-entropy loss", "mse": "mean squared error"}
_CENTER_WORDS = {"geometric_median": "geometric median", "coordinate_median": "coordinate-wise median"}
# What the round runner writes for an update it could not use (`ExceptionName: message`), in words.
_ERROR_WORDS = {
    "ContentNotFound": "the update is not in the content store",
    "IntegrityError": "the stored bytes do not match the sha256 on chain",
    "CorruptedBlock": "a block of the update is corrupted in the store",
    "CodecError": "the update is not a valid safetensors file for this model",
}


def metric_title(name: str) -> str:
    """A round's metric as a column title: "Accuracy", "R²"; a metric this module does not know, spaced out."""
    return _METRIC_TITLES.get(name, name.replace("_", " ").capitalize())


def loss_words(name: str) -> str:
    return _LOSS_WORDS.get(name, name.replace("_", " ") + " loss")


def number(value: Any, digits: int = 3) -> str:
    """A figure for reading: `digits` significant digits, no exponent for everyday magnitudes."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return "not a number" if math.isnan(x) else ("infinite" if x > 0 else "minus infinite")
    if x == 0:
        return "0"
    if 1e3 <= abs(x) < 1e9:
        return f"{x:,.0f}"
    if 1e-3 <= abs(x) < 1e3:
        text = f"{x:.{digits}g}"
        return text if "e" not in text else f"{x:.{max(digits - 1, 0)}f}"
    return f"{x:.{digits - 1}e}"


def percent(fraction: float, digits: int = 1) -> str:
    return f"{fraction * 100:.{digits}f}%"


def ether(wei: int | None, digits: int = 4) -> str:
    """Wei as ether, e.g. `3.3333 ETH` (exact integers in wei stay available beside it on the page)."""
    if wei is None:
        return "-"
    return f"{wei / WEI:,.{digits}f} ETH"


def address_short(address: str) -> str:
    return address if len(address) < 12 else f"{address[:6]}…{address[-4:]}"


def timestamp(seconds: int | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """`1 h 05 min`, `42 s`: how long until (or since) something."""
    s = max(int(seconds), 0)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {s:02d} s"
    return f"{s} s"


def reason_title(reason: str) -> str:
    """A flag's short name for tables ("free rider"), for any reason key."""
    return REASON_TITLES.get(reason) or _spaced(reason)


def _spaced(key: str) -> str:
    return re.sub(r"[_\-]+", " ", str(key)).strip()


def _ratio(value: Any, base: Any) -> float | None:
    try:
        v, b = float(value), float(base)
    except (TypeError, ValueError):
        return None
    return v / b if b > 0 and math.isfinite(v) and math.isfinite(b) else None


def _invalid(detail: Mapping[str, Any], _config: Mapping[str, Any]) -> str:
    error = str(detail.get("error", "")).strip()
    kind, _, message = error.partition(": ")
    if kind in _ERROR_WORDS:
        replay = re.search(r"update metadata (\w+)='?([^',]*)'?, expected '?([^']*)'?", message)
        if kind == "CodecError" and replay:
            return (
                f"the update was made for {_spaced(replay.group(1))} {replay.group(2) or '(none)'}, not "
                f"{replay.group(3)}: a replay of another round's update"
            )
        return f"{_ERROR_WORDS[kind]} ({message})" if message else _ERROR_WORDS[kind]
    if "NaN or Inf" in error:
        return "the update contains NaN or infinite values"
    if error:
        return f"the update could not be used: {error}"
    return "the update could not be used"


def _cosine(value: Any) -> str:
    """Cosines near 1 keep their digits: 0.99 and 0.99998 must not both read as 1."""
    x = _float_or_none(value)
    if x is None:
        return str(value)
    return f"{x:.5f}" if 0.99 <= abs(x) < 1 else number(x, 3)


def _float_or_none(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _free_rider(detail: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    ratio = _ratio(detail.get("norm"), detail.get("median_norm"))
    limit = detail.get("ratio", config.get("free_rider_ratio"))
    if ratio == 0:
        size = "all zeros"
    else:
        size = f"{number(ratio, 2)}x the median norm" if ratio is not None else "almost zero"
    tail = f" (at most {number(limit, 2)}x counts as sending the model back unchanged)" if limit else ""
    return f"update {size}{tail}: nothing was trained"


def _sybil(detail: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    cluster = [str(a) for a in detail.get("cluster", [])]
    others = len(cluster) - 1 if cluster else None
    who = f"{others} other update{'s' if others != 1 else ''}" if others else "other updates"
    cosine = detail.get("min_cosine")
    limit = config.get("sybil_cosine")
    similar = f" (cosine similarity at least {_cosine(cosine)}" if cosine is not None else ""
    if similar:
        similar += f"; {_cosine(limit)} or more counts as a copy)" if limit else ")"
    return f"update nearly identical to {who} in this round{similar}: one operator posing as several trainers"


def _distance(detail: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    ratio = _ratio(detail.get("distance"), detail.get("median"))
    center = _CENTER_WORDS.get(str(detail.get("center", config.get("center", ""))), "robust center")
    z, limit = detail.get("z_score"), config.get("mad_threshold")
    far = f"{number(ratio, 2)}x the median distance" if ratio is not None else "far"
    score = f" (robust z-score {number(z, 3)}" if z is not None else ""
    if score:
        score += f", above the limit of {number(limit, 3)})" if limit is not None else ")"
    return f"update {far} from the {center} of this round's updates{score}"


def _direction(detail: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    cosine, limit = detail.get("cosine"), detail.get("threshold", config.get("consistency_threshold"))
    rounds = detail.get("rounds")
    past = (
        f"its own direction over {rounds} earlier round{'s' if rounds != 1 else ''}" if rounds else "its past"
    )
    tail = f" (cosine {number(cosine, 3)}" if cosine is not None else ""
    if tail:
        tail += f", below {number(limit, 3)})" if limit is not None else ")"
    return f"update points away from {past}{tail}"


def _copied(detail: Mapping[str, Any], _config: Mapping[str, Any]) -> str:
    # Sealed rounds (#12): the update revealed names another trainer, so it was copied from a revealed one.
    error = str(detail.get("error", "")).strip()
    sentence = "the revealed update was made by another trainer (it names them, not its sender): a copy"
    return f"{sentence} ({error})" if error else sentence


_SENTENCES: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str]] = {
    "invalid": _invalid,
    "copied_update": _copied,
    "free_rider": _free_rider,
    "sybil_cluster": _sybil,
    "distance_outlier": _distance,
    "inconsistent_direction": _direction,
}


def _generic(reason: str, detail: Mapping[str, Any]) -> str:
    figures = [
        f"{_spaced(k)} {number(v) if isinstance(v, int | float) else v}"
        for k, v in sorted(detail.items())
        if isinstance(v, int | float | str) and not isinstance(v, bool)
    ]
    return _spaced(reason) + (f" ({', '.join(figures)})" if figures else "")


def flag_sentence(flag: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> str:
    """One sentence for one flag of the report; `config` is the report's `outlier_config`."""
    for key in ("message", "explanation", "text"):
        written = flag.get(key)
        if isinstance(written, str) and written.strip():
            return written.strip()
    reason = str(flag.get("reason", "flagged"))
    raw = flag.get("detail")
    detail: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    build = _SENTENCES.get(reason)
    try:
        return build(detail, config or {}) if build else _generic(reason, detail)
    except (TypeError, ValueError):  # figures of an unexpected shape: still words, never a traceback
        return _generic(reason, detail)


def defense_words(config: Mapping[str, Any]) -> list[str]:
    """The outlier checks of a round report's `outlier_config`, one phrase each."""
    phrases = []
    if "free_rider_ratio" in config:
        phrases.append(f"free riders below {number(config['free_rider_ratio'], 2)}x the median norm")
    if "sybil_cosine" in config:
        phrases.append(f"near-copies at cosine {number(config['sybil_cosine'], 4)} or more")
    if "mad_threshold" in config:
        center = _CENTER_WORDS.get(str(config.get("center")), "a robust center")
        phrases.append(f"distance from the {center} above robust z-score {number(config['mad_threshold'])}")
    if "consistency_threshold" in config:
        phrases.append(
            f"direction against the trainer's past below cosine {number(config['consistency_threshold'])}"
        )
    known = {"free_rider_ratio", "sybil_cosine", "mad_threshold", "center", "consistency_threshold"}
    for key, value in sorted(config.items()):
        if key.startswith("enable_") or key.endswith("_enabled"):
            if value:
                phrases.append(_spaced(key.removeprefix("enable_").removesuffix("_enabled")))
        elif key not in known and isinstance(value, bool) and value:
            phrases.append(_spaced(key))
    return phrases
