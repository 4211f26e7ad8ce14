//! Tenantry's tenant operator. The reconciler arrives with the operator issue; what is here
//! already is the ERP version policy every part of the product must honour.

pub mod version;
