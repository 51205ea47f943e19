"""Synthetic chest CT phantoms with airway trees and their construction truth (numpy)."""
