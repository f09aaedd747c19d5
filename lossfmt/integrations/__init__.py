"""Drop-in adapters between lossfmt and the tools people already use.

Each submodule imports its framework only when it is itself imported, so ``import lossfmt`` stays light:

- ``lossfmt.integrations.keras``: ``LossfmtCallback`` for ``keras.Model.fit`` (Keras 3, any backend).
- ``lossfmt.integrations.lightning``: ``LossfmtLogger``, a PyTorch Lightning ``Logger``.
- ``lossfmt.integrations.tensorboard``: ``import_tb`` converts TensorBoard event files
  (needs ``pip install 'lossfmt[tensorboard]'``).
- ``lossfmt.integrations.transformers``: ``LossfmtCallback``, a Hugging Face ``TrainerCallback``
  (``Trainer(callbacks=[LossfmtCallback("runs/exp1.arrow")])``).
- ``lossfmt.integrations.torch_distributed``: ``rank_writer`` gives every rank of a ``torch.distributed`` job
  its own file (or only rank 0 one); ``read_ranks`` and ``mean_across`` (in the ``lossfmt.dataset`` module)
  merge them back.
"""
