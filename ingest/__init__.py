"""clauditor.ingest"""
