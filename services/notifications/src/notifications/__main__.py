"""`python -m notifications serve|worker|migrate|topology|queues|dlq`."""

from notifications.main import service

main = service.main

if __name__ == "__main__":
    main()
