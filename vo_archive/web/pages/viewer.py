"""The interactive spectrum viewer of an object page (Bokeh; no Flask here).

Every 1D spectrum goes to the page as float32 arrays inside the Bokeh document
(serialised as binary, base64), scaled by its median so that spectra of
different flux calibration overlay. The controls (redshift, expansion velocity,
observed or rest frame, stacking, one check box per spectrum) run in the
browser: one ``CustomJS`` callback recomputes the x and y columns and moves
the line markers. BokehJS itself is served by the archive
(:mod:`vo_archive.web.pages.routes`), never from a CDN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Speed of light (km/s).
C_KMS = 299_792.458
#: Most points of one spectrum sent to the page (evenly thinned beyond that).
MAX_POINTS = 4000

#: Lines supernova astronomers look for: (marker name, label, rest wavelength
#: in air, Å).
LINES: tuple[tuple[str, str, float], ...] = (
    ("Halpha", "H\u03b1", 6562.8), ("Hbeta", "H\u03b2", 4861.3),
    ("Hgamma", "H\u03b3", 4340.5),
    ("Hdelta", "H\u03b4", 4101.7),
    ("HeI5876", "He I", 5875.6), ("HeI6678", "He I", 6678.2),
    ("HeI7065", "He I", 7065.2), ("HeII4686", "He II", 4685.7),
    ("SiII6355", "Si II", 6355.0), ("SiII5972", "Si II", 5972.0),
    ("CaIIK", "Ca II K", 3933.7), ("CaIIH", "Ca II H", 3968.5),
    ("CaII8498", "Ca II", 8498.0), ("CaII8542", "Ca II", 8542.1),
    ("CaII8662", "Ca II", 8662.1),
    ("OI7774", "O I", 7774.0), ("FeII5169", "Fe II", 5169.0),
    ("SII5454", "S II", 5454.0), ("SII5640", "S II", 5640.0),
    ("NaID", "Na I D", 5892.9),
    ("OI6300", "[O I]", 6300.3), ("OI6364", "[O I]", 6363.8),
)

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#ff7f0e", "#7f7f7f")


@dataclass(frozen=True, slots=True)
class PlotSpectrum:
    """One spectrum as the viewer shows it."""

    label: str
    wave: npt.NDArray[np.float64]
    flux: npt.NDArray[np.float64]
    proprietary: bool = False


@dataclass(frozen=True, slots=True)
class TemplateCurve:
    """The best-matching template, already at its matched redshift."""

    label: str
    wave: npt.NDArray[np.float64]
    flux: npt.NDArray[np.float64]


def thin(wave: npt.NDArray[np.float64], flux: npt.NDArray[np.float64],
         limit: int = MAX_POINTS) -> tuple[npt.NDArray[np.float32],
                                            npt.NDArray[np.float32]]:
    """Return finite points, at most ``limit`` of them, as float32."""
    ok = np.isfinite(wave) & np.isfinite(flux)
    w, f = wave[ok], flux[ok]
    if w.size > limit:
        step = int(np.ceil(w.size / limit))
        w, f = w[::step], f[::step]
    return w.astype(np.float32), f.astype(np.float32)


def normalise(flux: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return the flux divided by its median absolute value (1 if that is 0)."""
    scale = float(np.median(np.abs(flux))) if flux.size else 1.0
    if not np.isfinite(scale) or scale == 0.0:
        scale = 1.0
    return (flux / scale).astype(np.float32)


def line_position(rest: float, z: float, velocity_kms: float, rest_frame: bool
                  ) -> float:
    """Return where a line's marker stands (the JS callback's formula)."""
    blue = rest * (1.0 - velocity_kms / C_KMS)
    return blue if rest_frame else blue * (1.0 + z)


_UPDATE_JS = """
const z = Math.max(-0.5, Number(zin.value) || 0);
const v = Number(vin.value) || 0;
const rest = frame.active === 1;
const stacked = stack.active.includes(0);
sources.forEach((s, i) => {
  const w = s.data.wave_obs, f = s.data.flux_norm;
  const x = new Float32Array(w.length), y = new Float32Array(f.length);
  const off = stacked ? offsets[i] : 0;
  for (let k = 0; k < w.length; k++) {
    x[k] = rest ? w[k] / (1 + z) : w[k];
    y[k] = f[k] + off;
  }
  s.data = Object.assign({}, s.data, {wave: x, flux: y});
});
if (tsource !== null) {
  const w = tsource.data.wave_obs, f = tsource.data.flux_norm;
  const x = new Float32Array(w.length);
  for (let k = 0; k < w.length; k++) { x[k] = rest ? w[k] / (1 + z) : w[k]; }
  tsource.data = Object.assign({}, tsource.data, {wave: x, flux: f});
}
spans.forEach((sp, i) => {
  const at = sp.tags[0] * (1 - v / 299792.458) * (rest ? 1 : 1 + z);
  sp.location = at;
  labels[i].x = at;
});
renderers.forEach((r, i) => { r.visible = checks.active.includes(i); });
"""


def build_plot(spectra: Sequence[PlotSpectrum], template: TemplateCurve | None,
               redshift: float) -> tuple[str, str]:
    """Return the Bokeh ``<script>`` and ``<div>`` of the viewer.

    The models a test or a script may look for carry names: ``spectrum-<i>``
    (the line renderers, in date order), ``template``, ``marker:<line>`` (the
    line markers, a ``Span`` each), ``redshift``, ``velocity``, ``frame``,
    ``stack`` and ``spectra`` (the check boxes).
    """
    from bokeh.embed import components
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJS
    from bokeh.models.annotations import Label, Span
    from bokeh.models.widgets import CheckboxGroup, NumericInput, RadioButtonGroup
    from bokeh.plotting import figure

    fig = figure(height=420, sizing_mode="stretch_width", name="spectra-plot",
                 tools="xpan,xwheel_zoom,box_zoom,reset,save,crosshair",
                 active_scroll="xwheel_zoom", x_axis_label="Wavelength (Å)",
                 y_axis_label="Flux / median (+ offset when stacked)",
                 output_backend="canvas")
    n = len(spectra)
    offsets = [float(n - 1 - i) * 1.5 for i in range(n)]
    sources, renderers = [], []
    for i, sp in enumerate(spectra):
        w, f = thin(sp.wave, sp.flux)
        fn = normalise(f)
        src = ColumnDataSource({"wave_obs": w, "flux_norm": fn, "wave": w,
                                "flux": fn}, name=f"source-{i}")
        r = fig.line("wave", "flux", source=src, line_width=1.2,
                     color=COLOURS[i % len(COLOURS)], name=f"spectrum-{i}",
                     legend_label=sp.label + (" (proprietary)"
                                              if sp.proprietary else ""))
        sources.append(src)
        renderers.append(r)
    tsource = None
    if template is not None:
        tw, tf = thin(template.wave, template.flux)
        tsource = ColumnDataSource({"wave_obs": tw, "flux_norm": tf, "wave": tw,
                                    "flux": tf}, name="template-source")
        fig.line("wave", "flux", source=tsource, color="#444", line_dash="dashed",
                 line_width=1.2, name="template",
                 legend_label=f"template {template.label}")
    spans, labels = [], []
    for key, label, rest in LINES:
        at = line_position(rest, redshift, 0.0, False)
        mark = Span(location=at, dimension="height", line_color="#999",
                  line_dash="dotted", line_width=1, name=f"marker:{key}",
                  tags=[rest])
        lab = Label(x=at, y=4, y_units="screen", text=label, text_font_size="9px",
                    text_color="#555", angle=1.5708, x_offset=-2,
                    name=f"label:{key}")
        fig.add_layout(mark)
        fig.add_layout(lab)
        spans.append(mark)
        labels.append(lab)
    if fig.legend:
        fig.legend.click_policy = "hide"
        fig.legend.location = "top_right"
        fig.legend.label_text_font_size = "9px"
        fig.legend.background_fill_alpha = 0.6
        fig.legend.spacing = 0
    zin = NumericInput(value=round(redshift, 5), mode="float", title="Redshift z",
                       name="redshift", width=110, low=-0.5, high=10)
    vin = NumericInput(value=0, mode="float", title="Expansion velocity (km/s)",
                       name="velocity", width=160)
    frame = RadioButtonGroup(labels=["observed", "rest frame"], active=0,
                             name="frame")
    stack = CheckboxGroup(labels=["stack with offsets"], active=[], name="stack")
    checks = CheckboxGroup(labels=[s.label for s in spectra],
                           active=list(range(n)), name="spectra")
    update = CustomJS(args={"sources": sources, "renderers": renderers,
                            "tsource": tsource, "spans": spans, "labels": labels,
                            "zin": zin, "vin": vin, "frame": frame, "stack": stack,
                            "checks": checks, "offsets": offsets}, code=_UPDATE_JS)
    zin.js_on_change("value", update)
    vin.js_on_change("value", update)
    frame.js_on_change("active", update)
    stack.js_on_change("active", update)
    checks.js_on_change("active", update)
    for r in renderers:
        # a legend click hides the line: keep its check box in step
        r.js_on_change("visible", CustomJS(args={"checks": checks, "r": r,
                                                 "renderers": renderers}, code="""
const i = renderers.indexOf(r);
const on = checks.active.includes(i);
if (r.visible !== on) {
  checks.active = r.visible ? checks.active.concat([i]).sort((a, b) => a - b)
                            : checks.active.filter(j => j !== i);
}"""))
    # two short rows: the controls fit a phone's width
    layout = column(row(zin, vin), row(frame, stack), fig, checks,
                    sizing_mode="stretch_width")
    script, div = components(layout)
    return script, div
