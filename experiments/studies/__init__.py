"""The course studies, one module per practical session; :mod:`bayesdl.experiments.catalogue`
names them and imports a study's module only when it runs."""
