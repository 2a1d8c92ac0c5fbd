"""clauditor.alerts"""
