"""Avro: the codec, the generated encoders/decoders, the record frame and schema fingerprints.
"""
