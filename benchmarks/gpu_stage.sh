#!/usr/bin/env bash
# Prepare, on a machine with network and the datasets, what benchmarks/gpu_check.sh needs on a GPU
# machine that reaches nothing: the pure-Python wheels its image lacks and the datasets, gzipped,
# in .gpu/ (in .gitignore; carried to the device, about 50 MB of the 64 MiB limit).
#
#   benchmarks/gpu_stage.sh [DATA_ROOT]        # default $BAYESDL_DATA
#
# The GPU image (see the device notes) has torch, lightning, numpy, scipy, scikit-learn, xarray,
# h5py, matplotlib and tqdm, but not Pyro or ArviZ.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${BAYESDL_DATA:?pass the dataset root or set BAYESDL_DATA}}
rm -rf .gpu && mkdir -p .gpu/whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    -d .gpu/whl pyro-ppl==1.9.2 pyro-api==0.1.2 "arviz==0.23.4" h5netcdf xarray-einstats platformdirs
# Studies need MNIST (train and test), Kuzushiji-MNIST and Fashion-MNIST (test splits for OOD).
tar -czf .gpu/data.tar.gz -C "$data" MNIST KMNIST FashionMNIST
du -sh .gpu/whl .gpu/data.tar.gz
