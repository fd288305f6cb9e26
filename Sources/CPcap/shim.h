#ifndef MPTRACEBOX_CPCAP_SHIM_H
#define MPTRACEBOX_CPCAP_SHIM_H
#include <pcap/pcap.h>
#endif
