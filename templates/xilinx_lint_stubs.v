// Lint stubs of the Xilinx 7-series primitives that amaranth's Xilinx platform instantiates in top.v
// (IO buffers, the global clock buffer gated by the end of configuration, the reset synchroniser's
// flip-flops), for `verilator --lint-only` only: Verilator needs a module for every instance. Each
// declares the ports and parameters amaranth connects, named as in Xilinx UG953, and models only what
// lint needs to see driven. Vivado has the real primitives (UNISIM): never add this file to a Vivado
// project. Inputs a stub does not model go into a wire named `unused_*`, which Verilator's -Wall does not
// report (--unused-regexp, default "*unused*"). See xilinx_lint.vlt for the waivers of top.v.

// Input buffer (the UART's rx pin, the clock and reset pins)
module IBUF (input I, output O);
  assign O = I;
endmodule

// Tristate output buffer (the UART's tx pin; amaranth drives T low: always on)
module OBUFT (input I, input T, output O);
  assign O = I;
  wire unused_t = T;
endmodule

// Global clock buffer with two clock inputs; amaranth uses it as a BUFGCE: I0 while CE0 (configuration done)
module BUFGCTRL #(parameter SIM_DEVICE = "7SERIES") (
  input CE0, input CE1, input I0, input I1, input IGNORE0, input IGNORE1, input S0, input S1, output O
);
  assign O = I0 & CE0 & S0;
  wire unused_inputs = &{1'b0, CE1, I1, IGNORE0, IGNORE1, S1};
  localparam unused_sim_device = SIM_DEVICE;
endmodule

// Configuration block: EOS rises at the end of configuration (startup)
module STARTUPE2 (output EOS);
  assign EOS = 1'b1;
endmodule

// D flip-flop with clock enable and asynchronous preset (the reset synchroniser)
module FDPE #(parameter [0:0] INIT = 1'b1) (input C, input CE, input D, input PRE, output reg Q);
  initial Q = INIT;
  always @(posedge C or posedge PRE)
    if (PRE) Q <= 1'b1;
    else if (CE) Q <= D;
endmodule
