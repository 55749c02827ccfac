from fastmicro.migrations import run_service_env

run_service_env("users")
