"""Evaluation: the corruption suite, eps*, l_inf / l_2 attacks."""
