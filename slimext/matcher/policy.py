"""When a weight check passes, warns or stops: the `WeightCheck` config section."""
from dataclasses import dataclass

OK, WARN, ERROR = "ok", "warn", "error"
_ON_MISMATCH = (ERROR, WARN)


class WeightCheckConfigError(ValueError):
    """A WeightCheck setting is invalid; the message names the key and allowed values."""


@dataclass(frozen=True)
class WeightCheckPolicy:
    on_mismatch: str = ERROR        # verdict when suspicious differences remain
    min_loaded_ratio: float = 0.95  # of the tensors the checkpoint is meant to provide
    detail_file: str = ""           # write every key's outcome here ('' = nowhere)
    enable: bool = True

    @classmethod
    def from_config(cls, cfg):
        """Read cfg['WeightCheck'] (absent keys keep their defaults)."""
        section = dict(cfg.get("WeightCheck") or {}) if cfg is not None else {}
        unknown = sorted(set(section) - {"on_mismatch", "min_loaded_ratio", "detail_file",
                                         "enable"})
        if unknown:
            raise WeightCheckConfigError(
                "unknown WeightCheck key(s) {}: use on_mismatch, min_loaded_ratio, "
                "detail_file, enable".format(", ".join(unknown)))
        on_mismatch = str(section.get("on_mismatch", ERROR)).lower()
        if on_mismatch not in _ON_MISMATCH:
            raise WeightCheckConfigError(
                "WeightCheck.on_mismatch={!r}: use error or warn".format(on_mismatch))
        try:
            ratio = float(section.get("min_loaded_ratio", 0.95))
        except (TypeError, ValueError):
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise WeightCheckConfigError("WeightCheck.min_loaded_ratio={!r}: use a number "
                                         "from 0 to 1".format(section["min_loaded_ratio"]))
        return cls(on_mismatch=on_mismatch, min_loaded_ratio=ratio,
                   detail_file=str(section.get("detail_file") or ""),
                   enable=_as_bool(section.get("enable", True)))

    def verdict(self, suspicious, notable_expected, loaded_ratio, unusable_reason=None):
        """(verdict, [reasons]) for the counts of one check."""
        if unusable_reason:
            return ERROR, [unusable_reason]
        reasons = []
        if suspicious:
            reasons.append("{} suspicious difference(s)".format(suspicious))
        if loaded_ratio < self.min_loaded_ratio:
            reasons.append("loaded {:.1%} of the tensors the checkpoint should provide, below "
                           "WeightCheck.min_loaded_ratio {:.0%}".format(loaded_ratio,
                                                                       self.min_loaded_ratio))
        if reasons:
            return self.on_mismatch, reasons
        if notable_expected:
            return WARN, ["{} expected difference(s) worth knowing about".format(
                notable_expected)]
        return OK, []


def _as_bool(value):
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)
