"""Avro in the Confluent wire format, the one reader and writer every service uses.

- `wire`: the header (magic byte, schema id), the rejections a value earns before its body is
  read, and a consumed batch joined into one buffer with every header read at once;
- `schemas`: writer schemas by id (unknown id vs registry unreachable), parsed and planned;
- `kernels`: the numba-compiled loops that read and write flat records;
- `columns`: the column batch the kernels fill and read (one convention);
- `decoder`: the feature decoder of the trainer and the scorer;
- `codec`: record-at-a-time fastavro encoding and decoding.

Nothing is re-exported here: import from the module that holds it.
"""
