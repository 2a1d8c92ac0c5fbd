"""clauditor.dashboards"""
