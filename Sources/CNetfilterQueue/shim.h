#ifndef MPTRACEBOX_CNFQ_SHIM_H
#define MPTRACEBOX_CNFQ_SHIM_H
#include <stdint.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#endif
