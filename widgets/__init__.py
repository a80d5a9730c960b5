"""Jupyter panels for the workbench: one :class:`ControlPanel`, made of parts usable alone.

Each part is a layout widget (``Presets``, ``Resources``, ``Tuning``, ``Progress``,
``LiveChart``, ``Results``) over a logic object with traitlets state and ``on_*``
behaviour (``PresetsLogic`` ...), which is what the tests drive without a browser. The
panels use only the engine's public API (:mod:`workbench`).
"""
from ._binding import Throttle
from ._charts import ChartsLogic, LiveChart
from ._panel import ControlPanel
from ._presets import PresetsLogic
from ._progress import Progress, ProgressLogic
from ._resources import Resources, ResourcesLogic
from ._results import Results, ResultsLogic
from ._setup import Presets
from ._tuning import Tuning, TuningLogic

__all__ = ["ControlPanel", "Presets", "PresetsLogic", "Resources", "ResourcesLogic", "Tuning", "TuningLogic",
           "Progress", "ProgressLogic", "LiveChart", "ChartsLogic", "Results", "ResultsLogic", "Throttle"]
