"""Small helpers the tests share: a real server process, worker functions."""
