"""nanokd's benchmarks and experiments: scripts that time, check and reproduce, built on the library.

Run each one as a module from the repository root, e.g.::

    python -m benchmarks.paper_mnist table     # the paper's MNIST experiments (section 3)
    python -m benchmarks.speed                 # a training step against PyTorch on the CPU
    python -m benchmarks.gpu_check --json gpu_check.json
    python -m benchmarks.mutation_report       # the mutation score per module, after a `mutmut run`

``python -m benchmarks.NAME --help`` lists each script's flags.  The
records they write (JSON, in benchmarks/results unless told otherwise) say
which command, commit and machine made them: see :mod:`benchmarks.common`.
"""
