"""Model compression: pruning, sparse storage, regularizers, neuron removal."""
