//! Native test harness for weir filters. TODO
