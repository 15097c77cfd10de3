"""INT8 judged on the task metric, format-free: this package never names a target.

* :mod:`.control`: the control split (real evaluation data, disjoint from the calibration crops) and its options.
* :mod:`.check`: the acceptance check of every INT8 artifact and ``--max-drop``'s accuracy control.
* :mod:`.search`: the layer search (the target's range options first, then keep the worst ``k`` layers in float
  for growing ``k``, never past the float cap).
* :mod:`.macs`: multiply-accumulates per layer from the exported ONNX graph (the float cap, ``--max-float``).
* :mod:`.ranking`: per-layer quantisation noise (the search's ranking, confirmed one by one on the output).
* :mod:`.report`: the per-layer report behind ``edgepose inspect --layers``.

What differs per format comes from the target registered for the artifact (``converters/targets/<name>/``):
its mixed-precision builder (``mixed=``), its graph reader (``graph=``), the float model that reader compares
with when rebuilt from ONNX (``float_model=``) and its own accuracy-control methods, if any (``controls=``).

Format-free too, and run before any quantisation: :mod:`.health` (the calibration health check: the set's
BatchNorm input statistics against the model's running statistics) and :mod:`.distill` (image-free calibration
crops distilled from those statistics).
"""
