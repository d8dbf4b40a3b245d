"""Week 3 on MNIST: MC dropout uncertainty, calibration, failure prediction, OOD detection.

The applications part of the course (slides "Applications of uncertainty", report week 3),
one module per study (:mod:`.dropout`, :mod:`.calibration`, :mod:`.failure`, :mod:`.ood`), all
built on one lab (:class:`.lab.MnistLab`): a LeNet lifted by ``BNN``, a ``Posterior`` of a method
spec, metrics from ``evaluation``. The networks are trained once and cached by recipe
(``--cache-dir``), so the four studies share them:

- ``dropout``: LeNet "all" (p = 0.5) with the dropout guide -- MC dropout;
- ``map``: the same LeNet as a MAP estimate (dropout slots off), the base of Laplace;
- ``mean_field``: the same LeNet with the mean-field guide;
- ``deep_ensemble``: five MAP LeNets (seeds ``seed .. seed + 4``; the first is ``map``);
- ``multiswag``: SWAG from each of those five MAP networks (MultiSWAG).

Every posterior comes from :meth:`.lab.MnistLab.posterior` by its method spec
(:data:`.lab.SPECS`): ensembles get their members from the same cache, and the methods declared
around a MAP (Laplace, SWAG) start from the cached MAP of their seed. A study compares a new
registered method by adding its spec to its rows.

A validation split (5,000 images) is carved from the training set by the seed; it serves
temperature scaling, ConfidNet's model selection and ODIN's tuning, never reporting.

The failure study can also run on Corbiere et al.'s own MNIST setup (``--set
networks=corbiere``; :data:`.lab.CORBIERE`): their SmallConvNet trained by SGD as in their
configuration, with 10% of the training images (6,000) for validation.
"""
