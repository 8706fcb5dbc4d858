#!/bin/bash
# Extracted verbatim from shared/seeds/implementation-guide.md, Phase 4, Step 4.1
# ("Create Comprehensive Health Check"); only this comment was added. Used by
# bench/health_bench as the peer mlkeeper health is compared with.
# ML Infrastructure Health Check

ALERT_EMAIL="admin@company.com"
ALERT_THRESHOLD_CPU=80
ALERT_THRESHOLD_MEM=90
ALERT_THRESHOLD_DISK=85

# Health check result
HEALTH_STATUS="OK"
ALERTS=()

# Check disk space
check_disk() {
    echo "Checking disk space..."

    while read -r line; do
        USAGE=$(echo "$line" | awk '{print $5}' | sed 's/%//')
        MOUNT=$(echo "$line" | awk '{print $6}')

        if [ "$USAGE" -gt $ALERT_THRESHOLD_DISK ]; then
            ALERTS+=("DISK: $MOUNT is ${USAGE}% full")
            HEALTH_STATUS="WARNING"
        fi
    done < <(df -h | grep -E "^/dev/")
}

# Check memory
check_memory() {
    echo "Checking memory..."

    MEM_USAGE=$(free | grep Mem | awk '{print int($3/$2 * 100)}')

    if [ "$MEM_USAGE" -gt $ALERT_THRESHOLD_MEM ]; then
        ALERTS+=("MEMORY: Usage at ${MEM_USAGE}%")
        HEALTH_STATUS="WARNING"
    fi
}

# Check CPU load
check_cpu() {
    echo "Checking CPU load..."

    CPU_LOAD=$(uptime | awk -F'load average:' '{print $2}' | awk '{print $1}' | sed 's/,//')
    CPU_CORES=$(nproc)
    CPU_PERCENT=$(echo "$CPU_LOAD / $CPU_CORES * 100" | bc)

    if [ "$CPU_PERCENT" -gt $ALERT_THRESHOLD_CPU ]; then
        ALERTS+=("CPU: Load average ${CPU_LOAD} (${CPU_PERCENT}% of capacity)")
        HEALTH_STATUS="WARNING"
    fi
}

# Check GPU (if available)
check_gpu() {
    if command -v nvidia-smi &> /dev/null; then
        echo "Checking GPU..."

        nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total \
            --format=csv,noheader,nounits | while read line; do
            GPU_ID=$(echo "$line" | cut -d',' -f1)
            GPU_UTIL=$(echo "$line" | cut -d',' -f2)
            MEM_USED=$(echo "$line" | cut -d',' -f3)
            MEM_TOTAL=$(echo "$line" | cut -d',' -f4)

            MEM_PERCENT=$(echo "$MEM_USED / $MEM_TOTAL * 100" | bc)

            if [ "$MEM_PERCENT" -gt 95 ]; then
                ALERTS+=("GPU$GPU_ID: Memory at ${MEM_PERCENT}%")
                HEALTH_STATUS="WARNING"
            fi
        done
    fi
}

# Check critical services
check_services() {
    echo "Checking services..."

    SERVICES=("docker" "ssh")

    for service in "${SERVICES[@]}"; do
        if ! systemctl is-active --quiet "$service"; then
            ALERTS+=("SERVICE: $service is not running")
            HEALTH_STATUS="CRITICAL"
        fi
    done
}

# Run all checks
check_disk
check_memory
check_cpu
check_gpu
check_services

# Report results
echo ""
echo "=== Health Check Results ==="
echo "Status: $HEALTH_STATUS"
echo "Timestamp: $(date)"
echo ""

if [ ${#ALERTS[@]} -eq 0 ]; then
    echo "✓ All checks passed"
else
    echo "⚠ Alerts:"
    for alert in "${ALERTS[@]}"; do
        echo "  - $alert"
    done

    # Send alert email
    if command -v mail &> /dev/null; then
        (
            echo "Health Check Status: $HEALTH_STATUS"
            echo ""
            for alert in "${ALERTS[@]}"; do
                echo "- $alert"
            done
        ) | mail -s "ML Infrastructure Health Alert" "$ALERT_EMAIL"
    fi
fi

# Exit with error code if critical
if [ "$HEALTH_STATUS" = "CRITICAL" ]; then
    exit 1
fi
