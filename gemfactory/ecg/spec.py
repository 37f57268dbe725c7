"""SignalSpec: what an ECG encoder expects to receive, saved in every checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ECGError

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
NORMALISATIONS = ("none", "zscore", "scale")


@dataclass(frozen=True)
class SignalSpec:
    """Sampling rate, lead order, length, units and normalisation of an encoder's input.

    ``normalisation``: ``none`` (physical mV as read), ``zscore`` (per lead, per record) or
    ``scale`` (multiply by ``scale``).
    """

    fs: float = 500.0
    leads: tuple[str, ...] = STANDARD_LEADS
    n_samples: int = 5000
    units: str = "mV"
    normalisation: str = "none"
    scale: float = 1.0
    allow_derived_leads: bool = True

    def __post_init__(self):
        object.__setattr__(self, "leads", tuple(self.leads))
        if self.fs <= 0:
            raise ECGError(f"signal spec: fs must be > 0, got {self.fs}")
        if self.n_samples <= 0:
            raise ECGError(f"signal spec: n_samples must be > 0, got {self.n_samples}")
        if not self.leads:
            raise ECGError("signal spec: leads must name at least one lead")
        if self.normalisation not in NORMALISATIONS:
            raise ECGError(
                f"signal spec: normalisation {self.normalisation!r} is not one of {list(NORMALISATIONS)}"
            )
        if self.units != "mV":
            raise ECGError(f"signal spec: units must be 'mV', got {self.units!r}")

    @property
    def n_leads(self) -> int:
        return len(self.leads)

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def to_dict(self) -> dict:
        d = asdict(self)
        d["leads"] = list(self.leads)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SignalSpec":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ECGError(f"signal spec: unknown keys {sorted(unknown)}")
        return cls(**d)
