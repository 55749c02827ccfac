"""`python -m orders serve|worker|migrate|topology|queues|dlq`."""

from orders.main import service

main = service.main

if __name__ == "__main__":
    main()
