#!/usr/bin/env bash
# Makes the Secrets that the fastmicro manifests reference, in one namespace, with fresh random
# values. Run it after `kubectl apply -k deploy/k8s/overlays/<overlay>` (it reads the RabbitMQ
# operator's default-user Secret, waiting for it if needed):
#
#   deploy/k8s/create-secrets.sh fastmicro        # prod overlay (fastmicro-dev for the dev overlay)
#
# It is idempotent: a Secret that exists is kept. To rotate one, delete it, run this again, then
# restart the pods that read it (for a database password, CloudNativePG updates the role itself).
# Needs kubectl (pointed at the cluster), openssl and python3. It makes:
#   fastmicro-pg-<service>  kubernetes.io/basic-auth  username, password: the service's PostgreSQL role
#   <service>-database      url: the service's DATABASE_URL, with that role and password
#   fastmicro-jwt-signing   key: users' JWT_SIGNING_KEY (a private P-256 JWK), for users alone
#   fastmicro-jwt-public    keys: JWT_PUBLIC_KEYS (its public JWK set), for all three services
#   fastmicro-metrics       token: the METRICS_TOKEN the APIs require on /metrics, and Prometheus sends
#   fastmicro-amqp          url: the services' AMQP_URL, from fastmicro-rabbitmq-default-user
#   notifications-smtp      username, password: only when SMTP_USERNAME and SMTP_PASSWORD are set
#                           here, for a mail server that wants a login
set -euo pipefail

namespace=${1:?usage: deploy/k8s/create-secrets.sh <namespace>}
# generated: services (tools/workspace.py, from services/*/pyproject.toml: `make generate`)
services=(users orders notifications)
# end generated
postgres_host=fastmicro-pg-rw          # the read-write Service CloudNativePG makes for the Cluster
rabbitmq_host=fastmicro-rabbitmq       # the Service the RabbitMQ operator makes for the RabbitmqCluster
rabbitmq_user_secret=fastmicro-rabbitmq-default-user

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

kc() { kubectl --namespace "$namespace" "$@"; }
exists() { kc get secret "$1" >/dev/null 2>&1; }
read_key() {  # <secret> <key>: the decoded value
    kc get secret "$1" -o "jsonpath={.data.$2}" | python3 -c 'import base64, sys; sys.stdout.write(base64.b64decode(sys.stdin.read()).decode())'
}
random_secret() { python3 -c 'import secrets; print(secrets.token_hex(32), end="")'; }
url_quote() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""), end="")' "$1"; }

# make <name> <type> <key>=<value>...: values go through files, never through the command line.
make_secret() {
    local name=$1 type=$2 pair
    shift 2
    local files=()
    for pair in "$@"; do
        printf '%s' "${pair#*=}" >"$work/${pair%%=*}"
        files+=("--from-file=${pair%%=*}=$work/${pair%%=*}")
    done
    kc create secret generic "$name" --type="$type" "${files[@]}" --dry-run=client -o yaml | kc apply -f - >/dev/null
    rm -f "$work"/*
    echo "created secret $name"
}

for service in "${services[@]}"; do
    role_secret=fastmicro-pg-$service
    url_secret=$service-database
    if exists "$url_secret"; then
        echo "kept secret $url_secret"
        exists "$role_secret" && echo "kept secret $role_secret" && continue
        echo "$url_secret exists but $role_secret does not: delete $url_secret to make both again" >&2
        exit 1
    fi
    if exists "$role_secret"; then
        echo "kept secret $role_secret"
        password=$(read_key "$role_secret" password)
    else
        password=$(random_secret)
        make_secret "$role_secret" kubernetes.io/basic-auth "username=$service" "password=$password"
    fi
    make_secret "$url_secret" Opaque \
        "url=postgresql+asyncpg://$service:$(url_quote "$password")@$postgres_host:5432/$service"
done

# The pair is made together: a public set without its private key (or the reverse) is refused.
# Rotating the key is not deleting these: see docs/operations.md, "Rotating the signing key".
if exists fastmicro-jwt-signing || exists fastmicro-jwt-public; then
    exists fastmicro-jwt-signing && exists fastmicro-jwt-public || {
        echo "only one of fastmicro-jwt-signing and fastmicro-jwt-public exists: delete it to make both" >&2
        exit 1
    }
    echo "kept secrets fastmicro-jwt-signing, fastmicro-jwt-public"
else
    # A P-256 key by openssl. Its JWK members are in the DER forms: the public point 04||x||y ends
    # the SubjectPublicKeyInfo; d is the 32-byte OCTET STRING after the ECPrivateKey's version 1.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve \
        -outform DER -out "$work/jwt.der"
    openssl pkey -inform DER -in "$work/jwt.der" -pubout -outform DER -out "$work/jwt.pub.der"
    pair=$(python3 - "$work/jwt.der" "$work/jwt.pub.der" <<'PY'
import base64, json, secrets, sys
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
private, point = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()[-65:]
assert point[0] == 4, "an uncompressed point"
start = private.index(b"\x02\x01\x01\x04\x20") + 5
public = {"kty": "EC", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:]), "kid": "k8s-" + secrets.token_hex(4)}
print(json.dumps({**public, "d": b64(private[start:start + 32])}))
print(json.dumps({"keys": [{**public, "alg": "ES256", "use": "sig"}]}))
PY
)
    rm -f "$work"/jwt.der "$work"/jwt.pub.der
    make_secret fastmicro-jwt-signing Opaque "key=$(head -1 <<<"$pair")"
    make_secret fastmicro-jwt-public Opaque "keys=$(tail -1 <<<"$pair")"
fi

if exists fastmicro-metrics; then
    echo "kept secret fastmicro-metrics"
else
    make_secret fastmicro-metrics Opaque "token=$(random_secret)"
fi

if exists fastmicro-amqp; then
    echo "kept secret fastmicro-amqp"
else
    for _ in $(seq 60); do
        exists "$rabbitmq_user_secret" && break
        echo "waiting for $rabbitmq_user_secret (the RabbitMQ operator makes it)"
        sleep 5
    done
    exists "$rabbitmq_user_secret" || { echo "no $rabbitmq_user_secret: is the RabbitmqCluster up?" >&2; exit 1; }
    user=$(read_key "$rabbitmq_user_secret" username)
    password=$(read_key "$rabbitmq_user_secret" password)
    make_secret fastmicro-amqp Opaque \
        "url=amqp://$(url_quote "$user"):$(url_quote "$password")@$rabbitmq_host:5672/"
fi

if [[ -n ${SMTP_USERNAME:-} && -n ${SMTP_PASSWORD:-} ]]; then
    if exists notifications-smtp; then
        echo "kept secret notifications-smtp"
    else
        make_secret notifications-smtp Opaque "username=$SMTP_USERNAME" "password=$SMTP_PASSWORD"
    fi
fi
