"""Training mechanics, written out to be read and checked.

- ``loop``: ``train_loop``, the explicit PyTorch loop (forward, loss, ``torch.autograd.grad``, a
  hand-written SGD update), and ``run_loop``, which adds data, the live loss curve and a run.
- ``curve``: ``ema`` (exponential smoothing), ``plot_loss_curve`` (the loss figure), loss.csv.
- ``numpy_net``: the seed's FC network in plain NumPy, backward pass by hand;
  ``scratch.train_scratch`` trains it on MNIST.
- ``gradcheck``: that backward pass against torch autograd and finite differences, in float64.
- ``bridge``: NumPy <-> torch parameters; ``twin``: the torch fc stepped beside the NumPy net.
"""
