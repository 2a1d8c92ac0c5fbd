"""clauditor.analytics"""
