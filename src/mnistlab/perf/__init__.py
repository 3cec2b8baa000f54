"""Speed, measured: the training bench against Keras (``bench``, ``keras_reference``), the
time-to-99% speedrun (``speedrun``), and the serving benchmark (``serve_bench``, ``synth``)."""
