"""clauditor.instrumentation"""
