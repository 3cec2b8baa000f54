"""Speed, measured: the training bench against Keras (``bench``, ``keras_reference``, ``cpu``:
the CPU's model and ISA), the time-to-99% speedrun against the published recipe
(``speedrun``, ``reference``), where a fused step's time goes (``profile``), and the serving
benchmark and hostile load (``serve_bench``, ``serve_abuse``, ``synth``)."""
