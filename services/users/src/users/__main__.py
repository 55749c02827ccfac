"""`python -m users serve|worker|migrate|topology|queues|dlq`."""

from users.main import service

main = service.main

if __name__ == "__main__":
    main()
